from harness import Method, register_method


@register_method("kpe", "KPE: one learnable vector added to every patch that holds a keypoint (Sec. 3.3)")
def kpe() -> Method:
    return Method(encoding="binary", point_source="keypoints")

from harness import Method, register_method


@register_method("ckpe", "CKPE: one learnable vector per keypoint category, added to its patch (Sec. 3.4)")
def ckpe() -> Method:
    return Method(encoding="categorical", point_source="keypoints")

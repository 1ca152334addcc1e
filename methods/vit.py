from harness import Method, register_method


@register_method("vit", "plain ViT, no keypoints (the 'without keypoints' column of Table 4)")
def vit() -> Method:
    return Method(encoding="none", point_source="none")

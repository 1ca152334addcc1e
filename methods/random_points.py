from harness import Method, register_method


@register_method("random", "CKPE fed uniform random points, seeded: the control of Tables 6 and 7")
def random_points() -> Method:
    return Method(encoding="categorical", point_source="random")

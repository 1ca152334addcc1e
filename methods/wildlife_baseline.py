from dataclasses import dataclass

from harness import Method, register_method

MEGADESCRIPTOR = ("megadescriptor", "hf-hub:bvra/megadescriptor", "hf-hub:bvra/wildlife-mega")


@dataclass(frozen=True)
class FrozenBaseline(Method):
    """No training: the pretrained backbone's pooled features, cosine similarity, 1-NN."""

    def caveats(self, cfg) -> list[dict]:
        if not cfg.backbone.lower().startswith(MEGADESCRIPTOR):
            return []
        leak = ("its training parts overlap this disjoint split's test individuals: possible test leakage"
                if cfg.protocol == "disjoint" else
                "with the same ClosedSetSplit(0.8, seed 666) its training images are this split's training images")
        return [{
            "id": "megadescriptor-trained-on-these-datasets",
            "text": "MegaDescriptor was trained on the closed-set training parts of the WildlifeDatasets "
                    "collection, MacaqueFaces, Giraffes, IPanda50 and CTai included; " + leak,
        }]


@register_method("wildlife-baseline",
                 "WildlifeDatasets baseline (Table 1): frozen pretrained MegaDescriptor-L-384, cosine 1-NN, no training")
def wildlife_baseline() -> Method:
    return FrozenBaseline(encoding="none", point_source="none", trains=False,
                          defaults={"backbone": "megadescriptor", "pretrained": True, "image_size": 384})

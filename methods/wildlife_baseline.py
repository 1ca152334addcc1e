from dataclasses import dataclass

from harness import Method, register_method

MEGADESCRIPTOR = ("megadescriptor", "hf-hub:bvra/megadescriptor", "hf-hub:bvra/wildlife-mega")
# WildlifeDatasets evaluates its baselines on ImageNet-normalized 384 px images
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FrozenBaseline(Method):
    """No training: the pretrained backbone's pooled features, cosine similarity, 1-NN."""

    def normalization(self, backbone):
        return IMAGENET_MEAN, IMAGENET_STD

    def caveats(self, cfg) -> list[dict]:
        out = [{
            "id": "preprocessing-differs-from-wildlifedatasets",
            "text": "ImageNet mean/std at the run's image size as WildlifeDatasets evaluates; the harness resizes "
                    "each image straight to a square with PIL bilinear, while WildlifeDatasets first stores images "
                    "at a short side of 518 px as JPEG: pixel values differ slightly",
        }]
        if not cfg.backbone.lower().startswith(MEGADESCRIPTOR):
            return out
        leak = ("its training parts overlap this disjoint split's test individuals: possible test leakage"
                if cfg.protocol == "disjoint" else
                "with the same ClosedSetSplit(0.8, seed 666) its training images are this split's training images")
        return [{
            "id": "megadescriptor-trained-on-these-datasets",
            "text": "MegaDescriptor was trained on the closed-set training parts of the WildlifeDatasets "
                    "collection, MacaqueFaces, Giraffes, IPanda50 and CTai included; " + leak,
        }, *out]


@register_method("wildlife-baseline",
                 "WildlifeDatasets baseline (Table 1): frozen pretrained MegaDescriptor-L-384, cosine 1-NN, no training")
def wildlife_baseline() -> Method:
    return FrozenBaseline(encoding="none", point_source="none", trains=False,
                          defaults={"backbone": "megadescriptor", "pretrained": True, "image_size": 384})

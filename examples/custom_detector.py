"""A custom detector from hrrkit layers: MSR → your backbone → AFR head, with the scale-KL term."""
import torch
import torch.nn.functional as F
from torch import nn

from hrrkit.nn import AdditiveRefinementHead, MultiScaleStyleRetrospection, NoisyRescale, ScaleConsistencyKL


class MyDetector(nn.Module):
    def __init__(self):
        super().__init__()
        backbone = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.GELU(), nn.Conv2d(16, 16, 3, 1, 1))
        blur = lambda x: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)  # noqa: E731 - a stand-in retrospector
        self.msr = MultiScaleStyleRetrospection(backbone, blur, rescale=NoisyRescale((1.0, 2.0), min_side=4))
        self.head = AdditiveRefinementHead(self.msr.descriptor_dim(16), correntropy_weight=0.5)
        self.kl = ScaleConsistencyKL(kind="binary")

    def forward(self, images, labels):
        out = self.msr(images)
        logits, per_scale = self.head(out.fused), self.head(out.stacked())
        return logits, self.head.loss(logits, labels).total + 0.1 * self.kl(per_scale)


def batch(n=16, size=24):  # smooth "real" images; "generated" ones carry a checkerboard artefact
    labels = torch.arange(n) % 2
    images = F.interpolate(torch.rand(n, 3, 6, 6) * 1.6 - 0.8, size=size, mode="bicubic")
    checker = (torch.arange(size)[:, None] + torch.arange(size)) % 2 * 0.2 - 0.1
    return images + labels.view(-1, 1, 1, 1) * checker, labels.float()


if __name__ == "__main__":
    torch.manual_seed(0)
    model, (images, labels) = MyDetector(), batch(64)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(30):
        logits, loss = model(*batch())
        opt.zero_grad(), loss.backward(), opt.step()
    accuracy = ((model(images, labels)[0] > 0).float() == labels).float().mean().item()
    print(f"final loss {loss.item():.3f}, accuracy on a fresh batch {accuracy:.2f}")

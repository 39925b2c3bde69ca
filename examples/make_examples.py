"""Regenerate the weight-free example graphs in examples/ (needs torch; transformers for the GPT-2 example).

    python examples/make_examples.py            # writes examples/resnet50.onnx, examples/gpt2-tiny.onnx

Each model is built randomly initialised (offline), exported in eval mode with torch.onnx.export (TorchScript
exporter, opset 17, static batch dims), saved with every initializer as external data, and the data file is then
deleted: the .onnx keeps the graph and the initializer dims only (a few hundred KB), which is all wattlint needs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ---- ResNet-50 (torchvision's architecture and module names; torchvision is not needed) ----------------------------

def resnet50(num_classes: int = 1000):
    import torch.nn as nn

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            if self.downsample is not None:
                identity = self.downsample(x)
            return self.relu(out + identity)

    class ResNet(nn.Module):
        def __init__(self, layers=(3, 4, 6, 3)):
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            self.layer1 = self._make(64, layers[0])
            self.layer2 = self._make(128, layers[1], 2)
            self.layer3 = self._make(256, layers[2], 2)
            self.layer4 = self._make(512, layers[3], 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(2048, num_classes)

        def _make(self, planes, blocks, stride=1):
            down = None
            if stride != 1 or self.inplanes != planes * 4:
                down = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                     nn.BatchNorm2d(planes * 4))
            layers = [Bottleneck(self.inplanes, planes, stride, down)]
            self.inplanes = planes * 4
            layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
            return nn.Sequential(*layers)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet()


def gpt2_tiny(n_layer: int = 4, n_embd: int = 256, n_head: int = 4, vocab: int = 8192, n_positions: int = 256):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=vocab, n_positions=n_positions,
                     use_cache=False, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg)


def bert_small(n_layer: int = 4, hidden: int = 256, heads: int = 4, vocab: int = 8192):
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(num_hidden_layers=n_layer, hidden_size=hidden, num_attention_heads=heads,
                     intermediate_size=4 * hidden, vocab_size=vocab, max_position_embeddings=512)
    return BertForMaskedLM(cfg)


def vit_small(n_layer: int = 4, hidden: int = 192, heads: int = 3, image: int = 224, patch: int = 16,
              classes: int = 1000):
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(num_hidden_layers=n_layer, hidden_size=hidden, num_attention_heads=heads,
                    intermediate_size=4 * hidden, image_size=image, patch_size=patch, num_labels=classes)
    return ViTForImageClassification(cfg)


def lstm_classifier(vocab: int = 10000, emb: int = 128, hidden: int = 256, classes: int = 10):
    import torch.nn as nn

    class LSTMClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(vocab, emb)
            self.lstm = nn.LSTM(emb, hidden, batch_first=True)
            self.fc = nn.Linear(hidden, classes)

        def forward(self, ids):
            out, _ = self.lstm(self.embedding(ids))
            return self.fc(out[:, -1])

    return LSTMClassifier()


def logits_only(model):
    """Make a transformers model's forward take one tensor and return only the logits, keeping its class hierarchy
    and module names (so ONNX scopes match ``named_modules``). An explicit all-ones attention mask keeps the
    TorchScript exporter off ``aten::diff`` (transformers 5)."""
    import torch

    base = type(model)
    key = "input_ids" if "ForImageClassification" not in base.__name__ else "pixel_values"

    def forward(self, x):
        kw = {key: x, "return_dict": False}
        if key == "input_ids":
            kw["attention_mask"] = torch.ones_like(x)
            if "GPT2" in base.__name__:
                kw["use_cache"] = False
        return base.forward(self, **kw)[0]

    model.__class__ = type(base.__name__, (base,), {"forward": forward})
    return model


def fold_batchnorm(model):
    """Fold every BatchNorm that directly follows a Conv (as the eval-mode ONNX export does) and replace it by
    Identity: the PyTorch module then matches the exported graph op for op."""
    import torch.nn as nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for parent in list(model.modules()):
        names = list(parent._modules)
        for i, name in enumerate(names):
            bn = parent._modules[name]
            if not isinstance(bn, nn.BatchNorm2d):
                continue
            conv_name = None
            if name.startswith("bn") and "conv" + name[2:] in parent._modules:
                conv_name = "conv" + name[2:]
            elif i > 0 and isinstance(parent._modules[names[i - 1]], nn.Conv2d):
                conv_name = names[i - 1]
            if conv_name is not None:
                parent._modules[conv_name] = fuse_conv_bn_eval(parent._modules[conv_name], bn)
                parent._modules[name] = nn.Identity()
    return model


# ---- export -----------------------------------------------------------------------------------------------------

def export_weightless(module, args, out: Path, *, input_names, output_names, dynamic_axes=None,
                      opset: int = 17, keep_data: bool = False) -> Path:
    """torch.onnx.export (TorchScript exporter) in eval mode, then strip the weights to an external file and delete
    it (unless keep_data). Returns the path of the .onnx."""
    import warnings

    import onnx
    import torch

    module = module.eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmp = Path(td) / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(module, args, str(tmp), input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True,
                              dynamo=False)
        model = onnx.load(str(tmp))
    data_name = out.name + ".data"
    if out.exists():
        out.unlink()
    onnx.save_model(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_name, size_threshold=1024)
    if not keep_data:
        os.unlink(out.parent / data_name)
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    torch.manual_seed(0)
    out = HERE
    p = export_weightless(resnet50(), (torch.randn(32, 3, 224, 224),), out / "resnet50.onnx",
                          input_names=["input"], output_names=["logits"])
    print(f"wrote {p} ({p.stat().st_size / 1e3:.0f} kB)")
    try:
        gpt = logits_only(gpt2_tiny())
    except ImportError:
        print("transformers not installed: skipped gpt2-tiny.onnx", file=sys.stderr)
        return 0
    p = export_weightless(gpt, (torch.zeros(8, 256, dtype=torch.long),), out / "gpt2-tiny.onnx",
                          input_names=["input_ids"], output_names=["logits"])
    print(f"wrote {p} ({p.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

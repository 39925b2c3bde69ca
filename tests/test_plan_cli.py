"""Bad plan values exit 2 with one line on stderr, through the CLI (default estimate command)."""

import pytest

from conftest import EXAMPLES

MODEL = EXAMPLES / "resnet50.onnx"

pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="examples/resnet50.onnx not built")


@pytest.mark.parametrize("args,needle", [
    (["--gpu", "rtx3099"], "did you mean 'rtx3090'"),
    (["--gpu", "rtx3090", "--epochs", "-1"], "--epochs"),
    (["--gpu", "rtx3090", "--epochs", "0"], "--epochs"),
    (["--gpu", "rtx3090", "--batch-size", "0"], "--batch-size"),
    (["--gpu", "rtx3090", "--region", "XX"], "unknown region 'XX'"),
    (["--gpu", "rtx3090", "--region", "aws:us-east-9"], "did you mean 'aws:us-east-"),
    (["--gpu", "rtx3090", "--steps", "5", "--epochs", "3"], "--steps"),
    (["--gpu", "rtx3090", "--dataset", "imagenet-2k"], "unknown dataset"),
])
def test_bad_values_exit_2(run_cli, args, needle):
    code, out, err = run_cli(MODEL, *args)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert needle in err


def test_alias_resolution_is_an_assumption(run_cli):
    code, out, err = run_cli(MODEL, "--gpu", "3090", "--epochs", "1", "--format", "json")
    assert code == 0, err
    import json

    data = json.loads(out)
    assert data["hardware"]["gpu"] == "rtx3090-24gb"
    text = "\n".join(data["assumptions"])
    assert "resolved to rtx3090-24gb" in text
    assert "imagenet-1k inferred" in text
    assert data["plan"]["steps"] == -(-1281167 // data["plan"]["batch_size"])


def test_fr_emits_less_than_de(run_cli):
    import json

    res = {}
    for region in ("FR", "DE"):
        code, out, err = run_cli(MODEL, "--gpu", "a100", "--epochs", "1", "--region", region, "--format", "json")
        assert code == 0, err
        res[region] = json.loads(out)["total"]
    assert res["FR"]["energy_kwh"] == pytest.approx(res["DE"]["energy_kwh"])
    assert res["FR"]["co2_kg"] < res["DE"]["co2_kg"]

"""Model registry: parameter counts, forward/backward shapes, pretrained loading, errors."""

from __future__ import annotations

import pytest
import torch
import torchvision

from sound_captions.models import (
    MODEL_NAMES,
    InvalidHparamsError,
    PretrainedWeightsError,
    UnknownModelError,
    build_model,
    count_parameters,
    default_hparams,
)
from sound_captions.models.fuse import fused_for_inference

INPUT_SHAPES = [(1, 128, 128), (3, 256, 256)]


@pytest.fixture(autouse=True)
def _seeded_torch():
    """Seed torch's generator for each test and restore it afterwards."""
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


def test_registry_lists_the_expected_models():
    assert set(MODEL_NAMES) == {"baseline", "compact", "mobilenet", "panns_cnn14", "resnet18", "efficientnet_b0", "vgg11"}


# Cnn14 (80 M parameters) takes one-channel PANNs log-mel images: tests/test_pretrained.py has it.
IMAGE_MODELS = [name for name in MODEL_NAMES if name != "panns_cnn14"]


def test_baseline_parameter_count_matches_keras_study_model():
    model = build_model("baseline", num_classes=3, input_shape=(1, 128, 128))
    assert count_parameters(model) == 4_584_643
    assert count_parameters(model, include_buffers_like_keras=True) == 4_586_115


def test_baseline_flatten_size_follows_input_shape():
    model = build_model("baseline", num_classes=3, input_shape=(3, 256, 256))
    assert model.flatten_size == 256 * 16 * 16
    # conv stack with 3 input channels + a 65536→256 dense layer
    expected = (
        (27 * 32 + 32)
        + (288 * 64 + 64)
        + (576 * 128 + 128)
        + (1152 * 256 + 256)
        + 2 * (32 + 64 + 128 + 256)
        + (65536 * 256 + 256)
        + 2 * 256
        + (256 * 3 + 3)
    )
    assert count_parameters(model) == expected


@pytest.mark.parametrize("input_shape", INPUT_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_forward_backward_shapes_and_finite_grads(name, input_shape):
    num_classes = 5
    model = build_model(name, num_classes=num_classes, input_shape=input_shape)
    model.train()
    c, h, w = input_shape
    k = 2 * getattr(model, "context", 0) + 1  # a context model reads its neighbours' windows too
    x = torch.randn(2, c, h, k * w)
    logits = model(x)
    assert logits.shape == (2, num_classes)
    assert logits.dtype == torch.float32
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.randint(0, 2, (2, num_classes)).float()
    )
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ["baseline", "compact"])
def test_eval_batch_equals_stacked_single_items(name):
    model = build_model(name, num_classes=4).eval()
    x = torch.randn(3, 1, 128, 128)
    with torch.no_grad():
        batched = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)


def test_hparams_round_trip_through_defaults_and_lists():
    hp = default_hparams("baseline")
    assert hp == {
        "filters": (32, 64, 128, 256),
        "conv_dropout": 0.25,
        "dense_units": 256,
        "dense_dropout": 0.5,
    }
    hp["filters"] = [8, 16]  # as it comes back from JSON
    hp["dense_units"] = 32
    model = build_model("baseline", 2, (1, 64, 64), **hp)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 2)
    assert default_hparams("baseline")["filters"] == (32, 64, 128, 256)  # copy, not the original


def test_dropout_hparams_reach_the_layers():
    model = build_model("baseline", 3, conv_dropout=0.1, dense_dropout=0.3)
    ps = sorted({m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)})
    assert ps == [0.1, 0.3]


def test_unknown_model_name_lists_known_ones():
    with pytest.raises(UnknownModelError) as info:
        build_model("resnet1000", num_classes=3)
    assert isinstance(info.value, ValueError)
    for name in MODEL_NAMES:
        assert name in str(info.value)
    with pytest.raises(UnknownModelError):
        default_hparams("nope")


def test_unknown_hparam_is_rejected():
    with pytest.raises(InvalidHparamsError, match="dropout"):
        build_model("baseline", 3, dropout=0.2)


def test_too_small_input_is_rejected():
    with pytest.raises(ValueError, match="too small"):
        build_model("baseline", 3, input_shape=(1, 8, 128))


# -- pretrained weights -------------------------------------------------------------------------


@pytest.fixture
def resnet18_state(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    with torch.no_grad():  # make every tensor distinct from a fresh init, BN stats included
        for tensor in reference.state_dict().values():
            if tensor.is_floating_point():
                tensor.uniform_(0.1, 1.0)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    return path, reference.state_dict()


def test_pretrained_resnet18_3ch_loads_everything_but_the_head(resnet18_state):
    path, reference = resnet18_state
    model = build_model("resnet18", num_classes=7, input_shape=(3, 128, 128), pretrained=str(path))
    loaded = model.state_dict()
    for key, value in reference.items():
        if key.startswith("fc."):
            continue
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)
    assert loaded["fc.weight"].shape == (7, 512)


def test_pretrained_resnet18_1ch_stem_is_sum_of_rgb_kernels(resnet18_state):
    path, reference = resnet18_state
    model = build_model(
        "resnet18", num_classes=3, input_shape=(1, 128, 128), pretrained=f"file://{path}"
    )
    loaded = model.state_dict()
    assert loaded["conv1.weight"].shape == (64, 1, 7, 7)
    torch.testing.assert_close(
        loaded["conv1.weight"], reference["conv1.weight"].sum(dim=1, keepdim=True)
    )
    torch.testing.assert_close(
        loaded["layer4.1.bn2.running_var"], reference["layer4.1.bn2.running_var"]
    )
    # a grey image through the 1-channel stem equals its RGB copy through the original stem
    grey = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        rgb_out = torch.nn.functional.conv2d(
            grey.repeat(1, 3, 1, 1), reference["conv1.weight"], stride=2, padding=3
        )
        torch.testing.assert_close(model.conv1(grey), rgb_out, rtol=1e-4, atol=1e-4)


def test_pretrained_efficientnet_1ch_stem(tmp_path):
    reference = torchvision.models.efficientnet_b0(weights=None).state_dict()
    path = tmp_path / "effnet.pth"
    torch.save(reference, path)
    model = build_model(
        "efficientnet_b0", num_classes=2, input_shape=(1, 128, 128), pretrained=str(path)
    )
    loaded = model.state_dict()
    torch.testing.assert_close(
        loaded["features.0.0.weight"], reference["features.0.0.weight"].sum(dim=1, keepdim=True)
    )
    torch.testing.assert_close(
        loaded["features.7.0.block.3.0.weight"], reference["features.7.0.block.3.0.weight"]
    )
    assert loaded["classifier.1.weight"].shape == (2, 1280)


def test_missing_pretrained_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(PretrainedWeightsError, match="not found") as info:
        build_model("resnet18", 3, pretrained=str(missing))
    assert str(missing) in str(info.value)


def test_pretrained_file_of_another_architecture_lists_mismatches(tmp_path):
    path = tmp_path / "effnet.pth"
    torch.save(torchvision.models.efficientnet_b0(weights=None).state_dict(), path)
    with pytest.raises(PretrainedWeightsError) as info:
        build_model("resnet18", 3, pretrained=str(path))
    message = str(info.value)
    assert "missing conv1.weight" in message
    assert "more" in message  # hundreds of mismatches, only the first few listed
    assert message.count(";") <= 6


def test_pretrained_file_with_other_shapes_is_rejected(tmp_path):
    path = tmp_path / "resnet18_10.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), path)
    with pytest.raises(
        PretrainedWeightsError, match=r"fc\.weight: file \(10, 512\) vs model \(1000, 512\)"
    ):
        build_model("resnet18", 3, pretrained=str(path))


def test_pretrained_file_that_is_not_a_state_dict(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="garbage.pth"):
        build_model("resnet18", 3, pretrained=str(garbage))
    wrong_type = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], wrong_type)
    with pytest.raises(PretrainedWeightsError, match="not a state_dict"):
        build_model("resnet18", 3, pretrained=str(wrong_type))


# -- the caption run's fused form (models.fuse) -------------------------------------------------


def _random_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine terms (negative scales too), so folding them is
    really exercised; eval mode."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(-1.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_fused_form_gives_the_eager_numbers(name):
    model = _random_batchnorm(build_model(name, num_classes=5, input_shape=(1, 128, 128)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fused_for_inference(model)
    k = 2 * getattr(model, "context", 0) + 1
    x = torch.randn(4, 1, 128, k * 128)
    with torch.inference_mode():
        torch.testing.assert_close(torch.sigmoid(fused(x)), torch.sigmoid(model(x)), rtol=0, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched


def test_fused_baseline_has_no_batchnorm_and_pools_before_relu():
    model = _random_batchnorm(build_model("baseline", num_classes=3))
    fused = fused_for_inference(model)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    block = list(fused.features[0])
    assert isinstance(block[2], torch.nn.MaxPool2d) and isinstance(block[3], torch.nn.ReLU)
    assert len(fused.head) == len(model.head) and isinstance(fused.head[-1], torch.nn.Linear)


def test_fused_form_needs_eval_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fused_for_inference(build_model("baseline", num_classes=3).train())

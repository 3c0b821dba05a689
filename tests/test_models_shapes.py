"""Parameter counts, flatten sizes and output shapes of every seed model and baseline, for each dataset shape it
was published with (docs/models.md §1.6-1.7, §2.4, §3.6, §4.3-4.4, §5; docs/evaluation.md §3.2, §3.7, §3.9).

Full-size models are built and run on the meta device (shapes without memory), so the 177M-parameter FuseNets cost
nothing; real forward passes use small inputs. Where the reference gives no count, the expected figure is derived
layer by layer in the comment (trainable torch parameters; Keras "Total params" adds 2 per BatchNorm channel).
The counts for each model's default input and published classes are the table ``PARAMETERS``
(tests/_models_helpers.py), which tests/test_models_contract.py checks for every registered model.
"""

from __future__ import annotations

import pytest
import torch

from _models_helpers import PARAMETERS
from microexp.errors import ConfigError
from microexp.models import registry
from microexp.models.fusenet import fusenet_preprocess
from microexp.models.registry import count_parameters, parameter_count
from microexp.preprocess.config import PreprocessConfig, StreamConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def meta_model(name: str, n_classes: int, shapes: dict | None = None, **hparams):
    spec = registry.get(name)
    with torch.device("meta"):
        model = spec.builder(n_classes, shapes or spec.input_shapes(), **hparams)
    return model.eval(), spec


def meta_forward(model, shapes: dict, n: int = 2) -> torch.Size:
    with torch.device("meta"), torch.no_grad():
        return model(**{k: torch.empty(n, *s) for k, s in shapes.items()}).shape


def real_forward(name: str, n_classes: int, shapes: dict, n: int = 3, **hparams) -> torch.Tensor:
    torch.manual_seed(0)
    model = registry.get(name).builder(n_classes, shapes, **hparams).eval()
    with torch.no_grad():
        out = model(**{k: torch.randn(n, *s) for k, s in shapes.items()})
    assert torch.isfinite(out).all()
    return out


# ---------------------------------------------------------------- MicroExpFuseNet (§1.6, §1.7, §5)
@pytest.mark.parametrize("name,frames,expected,stream_flat", [
    ("fusenet-intermediate", 96, PARAMETERS["fusenet-intermediate"], 86_400),
    ("fusenet-intermediate", 18, 6_694_915, 3_200),
    ("fusenet-late", 96, PARAMETERS["fusenet-late"], 86_400),
    ("fusenet-late", 18, 6_827_523, 3_200),
])
def test_fusenet_counts_and_shapes(name: str, frames: int, expected: int, stream_flat: int) -> None:
    spec = registry.get(name)
    pre = fusenet_preprocess(frames)
    assert spec.input_shapes(pre) == {"eyes": (1, frames, 32, 32), "mouth": (1, frames, 32, 32)}
    assert parameter_count(spec, 3, pre) == expected
    model, _ = meta_model(name, 3, spec.input_shapes(pre))
    assert model.eyes.out_features == model.mouth.out_features == stream_flat
    assert model.flat_features == 2 * stream_flat  # 172,800 / 6,400 after the concatenation
    # (C, T, H, W): Keras 32x10x10x27 (CAS(ME)^2) / 32x10x10x1 (SMIC)
    assert model.eyes.feature_shape == (32, (frames - 14) // 3, 10, 10)
    assert meta_forward(model, spec.input_shapes(pre)) == (2, 3)
    # the paper profile changes activations, not sizes
    paper, _ = meta_model(name, 3, spec.input_shapes(pre), profile="paper")
    assert count_parameters(paper) == expected


@pytest.mark.parametrize("name", ["fusenet-intermediate", "fusenet-late"])
def test_fusenet_dense_layers_are_linear_as_coded_and_relu_in_paper_profile(name: str) -> None:
    shapes = {"eyes": (1, 17, 8, 8), "mouth": (1, 17, 8, 8)}
    assert real_forward(name, 3, shapes).shape == (3, 3)
    torch.manual_seed(0)
    eyes, mouth = torch.randn(2, 1, 17, 8, 8), torch.randn(2, 1, 17, 8, 8)
    for profile, affine in (("code", True), ("paper", False)):
        torch.manual_seed(1)
        model = registry.get(name).builder(3, shapes, profile=profile).eval()
        with torch.no_grad():
            fe, fm = model.eyes(eyes), model.mouth(mouth)
            if name == "fusenet-intermediate":
                def head(v, model=model):
                    return model.fc3(model._hidden(model.fc2(model._hidden(model.fc1(v)))))
                v, zero = torch.cat([fe, fm], 1), torch.zeros(2, model.flat_features)
                f = head
            else:
                def f(v, model=model):
                    a, b = v.split(model.eyes.out_features, dim=1)
                    return model.out(torch.cat([model._head(a, model.eyes_fc), model._head(b, model.mouth_fc)], 1))
                v, zero = torch.cat([fe, fm], 1), torch.zeros(2, model.flat_features)
            # an affine map satisfies f(v) + f(-v) == 2 f(0); ReLU layers break it
            lhs, rhs = f(v) + f(-v), 2 * f(zero)
            assert torch.allclose(lhs, rhs, atol=1e-4) is affine, profile


def test_fusenet_code_preprocessing_reproduces_the_scripts_frame_choice() -> None:
    casme = fusenet_preprocess(96, code=True)
    assert (casme.selection, casme.temporal, casme.window, casme.gray) == ("whole", "window", (72, 168), "code")
    smic = fusenet_preprocess(18, code=True)
    assert (smic.selection, smic.temporal, smic.frames) == ("whole", "first", 18)
    assert registry.get("fusenet-late").input_shapes(smic) == {"eyes": (1, 18, 32, 32), "mouth": (1, 18, 32, 32)}


def test_fusenet_rejects_unknown_profile_and_too_short_clips() -> None:
    with pytest.raises(ValueError, match="profile"):
        registry.get("fusenet-late").builder(3, {"eyes": (1, 18, 32, 32), "mouth": (1, 18, 32, 32)}, profile="x")
    with pytest.raises(ValueError, match="no features"):
        registry.get("fusenet-intermediate").builder(3, {"eyes": (1, 16, 32, 32), "mouth": (1, 16, 32, 32)})


# ---------------------------------------------------------------- Joshi 2021 (§2.4)
# derived counts (torch trainable):
#  3dcnn binary: conv 64*9+64=640, conv 96*64*9+96=55,392, dense 777,600*24+24=18,662,424, dense 24*2+2=50
#  3dcnn multi: 320 + BN 64 + 18,496 + BN 128 + 518,400*32+32=16,588,832 + BN 64 + 32*7+7=231
#  cnn+lstm: 320 + 18,496 + LSTM 4*32*(57,600+32+1)=7,377,024 + 24*32+24=792 + 24*k+k
#  convlstm: 4*32*9*(1+32)+128=38,144 + 1,143,072*48+48 (binary) or *64+64 (multi) + head out
#  2dcnn binary: 320 + 64 + 18,496 + 128 + 57,600*64+64=3,686,464 + 128 + 130
#  2dcnn multi: 640+128 + 73,856+256 + 295,168+512 + 50,176*384+384=19,267,968 + 768 + 36,960 + 192 + 679
JOSHI = [
    ("joshi-3dcnn", 2, 18_718_506, 777_600),
    ("joshi-3dcnn", 7, PARAMETERS["joshi-3dcnn"], 518_400),
    ("joshi-cnn-lstm", 2, 7_396_682, 57_600),
    ("joshi-cnn-lstm", 7, PARAMETERS["joshi-cnn-lstm"], 57_600),
    ("joshi-convlstm", 2, 54_905_746, 1_143_072),
    ("joshi-convlstm", 7, PARAMETERS["joshi-convlstm"], 1_143_072),
    ("joshi-2dcnn-vote", 2, 3_705_730, 57_600),
    ("joshi-2dcnn-vote", 7, PARAMETERS["joshi-2dcnn-vote"], 50_176),
]


@pytest.mark.parametrize("name,k,expected,flat", JOSHI)
def test_joshi_counts_flatten_and_full_size_output(name: str, k: int, expected: int, flat: int) -> None:
    model, spec = meta_model(name, k)
    assert spec.input_shapes() == {"clip": (1, 9, 128, 128)}
    assert spec.preprocess.selection == "keyframes9" and spec.preprocess.frames == 9
    assert count_parameters(model) == expected == parameter_count(spec, k)
    assert model.flat_features == flat
    assert model.mode == ("binary" if k == 2 else "multiclass")
    assert meta_forward(model, spec.input_shapes()) == (2, k)


@pytest.mark.parametrize("name", ["joshi-3dcnn", "joshi-cnn-lstm", "joshi-convlstm", "joshi-2dcnn-vote"])
@pytest.mark.parametrize("k", [2, 7])
def test_joshi_real_forward_small(name: str, k: int) -> None:
    assert real_forward(name, k, {"clip": (1, 9, 24, 24)}).shape == (3, k)


def test_joshi_mode_override_and_cnn_lstm_uses_relu_lstm() -> None:
    with torch.device("meta"):
        m = registry.get("joshi-3dcnn").builder(3, {"clip": (1, 9, 128, 128)}, mode="binary")
    assert m.mode == "binary" and m.flat_features == 777_600
    lstm_model, _ = meta_model("joshi-cnn-lstm", 7)
    assert (lstm_model.lstm.activation_name, lstm_model.lstm.recurrent_activation_name) == ("relu", "sigmoid")
    assert lstm_model.lstm.dropout == 0.4 and lstm_model.lstm.units == 32
    conv, _ = meta_model("joshi-convlstm", 2)
    assert conv.convlstm.rec(torch.tensor([1.0])).item() == pytest.approx(0.7)  # hard_sigmoid


def test_joshi_2dcnn_frame_logits_and_its_frames_vote_trainer() -> None:
    torch.manual_seed(0)
    model = registry.get("joshi-2dcnn-vote").builder(3, {"clip": (1, 9, 22, 22)}).eval()
    assert registry.get("joshi-2dcnn-vote").trainer == "frames-vote"  # the vote itself: tests/test_vote.py
    assert {registry.get(n).trainer for n in ("joshi-3dcnn", "joshi-cnn-lstm", "joshi-convlstm")} == {"clip"}
    frame_classes = torch.tensor([[0, 1, 1, 2, 1, 0, 1, 2, 1], [2, 2, 0, 0, 2, 1, 0, 2, 0]])
    logits = torch.nn.functional.one_hot(frame_classes, 3).float() * 5
    assert model.frame_logits(torch.zeros(2, 1, 9, 22, 22)).shape == (2, 9, 3)
    model.frame_logits = lambda clip: logits  # type: ignore[method-assign]
    # forward (train.trainer=clip): clip score = mean over frames of log-softmax; argmax agrees with the majority
    assert model(torch.zeros(2, 1, 9, 22, 22)).argmax(1).tolist() == [1, 0]


# ---------------------------------------------------------------- two-stream (§3.6)
def test_twostream_counts_and_shapes() -> None:
    model, spec = meta_model("twostream", 6)
    assert spec.input_shapes() == {"clip": (1, 152, 32, 32), "saliency": (1, 152, 32, 32)}
    assert model.flat_features == 311_296  # 38 x 4 x 4 x 512
    # streams 2 x (128*27+128 + 256*128*27+256) = 1,777,152; fusion 3 x (512*512*27+512) = 21,235,200;
    # dense 311,296*100+100 + 100*100+100 + 100*6+6
    assert count_parameters(model) == PARAMETERS["twostream"] == parameter_count(spec)
    assert meta_forward(model, spec.input_shapes()) == (2, 6)
    assert real_forward("twostream", 6, {"clip": (1, 8, 8, 8), "saliency": (1, 8, 8, 8)},
                        widths=(4, 8, 8)).shape == (3, 6)


# ---------------------------------------------------------------- regional CNN + LSTM (§4.3-4.4, §4.6)
def test_regional_counts_and_shapes() -> None:
    model, spec = meta_model("regional-lstm", 3)
    shapes = spec.input_shapes()
    assert set(shapes) == {f"roi{i}" for i in range(1, 7)}
    # per region: CNN 104 + 296 + (144 + 1,168 + 3,216 + 6,288) + 72*2048+2048 + 2048*256+256 = 685,264;
    # LSTM 4*64*(256+64+1) = 82,176; six regions 4,604,640; Dense 384*256+256 + 256*3+3
    assert count_parameters(model) == PARAMETERS["regional-lstm"] == parameter_count(spec)
    # full region sizes; 4 frames instead of 64 keep the meta pass quick (T does not change any shape)
    assert meta_forward(model, {r: (c, 4, h, w) for r, (c, _, h, w) in shapes.items()}) == (2, 3)
    code, _ = meta_model("regional-lstm", 3, profile="code")
    # + per region SE 1,314 + 1,368, Conv1x1 162: 11,826, Dense from 162 instead of 72: 184,320; SE fusion 74,208
    assert count_parameters(code) == PARAMETERS["regional-lstm"] + 6 * (1_314 + 1_368 + 11_826 + 184_320) + 74_208
    # the inception block gives 72 channels at 1/8 resolution ('same' pooling rounds up)
    with torch.no_grad():
        cnn = registry.get("regional-lstm").builder(3, {f"roi{i}": (1, 2, 17, 23) for i in range(1, 7)}).cnn["roi1"]
        x = cnn.base(torch.randn(1, 1, 17, 23))
        maps = torch.cat([cnn.pool(b(x)) for b in cnn.branches], 1)
    assert maps.shape == (1, 72, 3, 3)
    small = {f"roi{i}": (1, 3, 13, 17) for i in range(1, 7)}
    assert real_forward("regional-lstm", 3, small).shape == (3, 3)
    assert real_forward("regional-lstm", 3, small, profile="code").shape == (3, 3)


def test_regional_needs_all_six_regions() -> None:
    with pytest.raises(ValueError, match="roi6"):
        registry.get("regional-lstm").builder(3, {f"roi{i}": (1, 3, 13, 17) for i in range(1, 6)})


# ---------------------------------------------------------------- flow baselines (docs/evaluation.md §3.2, §3.7, §3.9)
def test_ststnet_counts_and_shapes() -> None:
    model, spec = meta_model("ststnet", 3)
    assert spec.input_shapes() == {"flow": (3, 1, 28, 28)}  # u, v, strain; one onset->apex field
    assert model.flat_features == 400
    # convs 84 + 140 + 224, BN 2*(3+5+8), FC 400*3+3: "about 1.7 K"
    assert count_parameters(model) == PARAMETERS["ststnet"]
    assert real_forward("ststnet", 3, spec.input_shapes()).shape == (3, 3)


def test_offapexnet_counts_and_shapes() -> None:
    model, spec = meta_model("offapexnet", 3)
    assert spec.input_shapes() == {"flow": (2, 1, 28, 28)}
    assert model.flat_features == 1_568
    # 2 x (6*25+6 + 16*6*25+16) + 1,568*1,024+1,024 + 1,024*1,024+1,024 + 1,024*3+3: the "2.66 M"
    assert count_parameters(model) == PARAMETERS["offapexnet"]
    assert real_forward("offapexnet", 3, spec.input_shapes()).shape == (3, 3)
    with pytest.raises(ValueError, match="u, v"):
        registry.get("offapexnet").builder(3, {"flow": (3, 1, 28, 28)})


# ---------------------------------------------------------------- registry conventions
def test_stream_shapes_follow_kind() -> None:
    spec = registry.get("stcnn")
    pre = PreprocessConfig(streams=(StreamConfig("a", "face", (8, 9), "raw"), StreamConfig("b", "face", (8, 9), "flow"),
                                    StreamConfig("c", "face", (8, 9), "flowstrain"),
                                    StreamConfig("d", "face", (8, 9), "saliency")), frames=5)
    assert spec.input_shapes(pre) == {"a": (1, 5, 8, 9), "b": (2, 1, 8, 9), "c": (3, 1, 8, 9), "d": (1, 5, 8, 9)}
    with pytest.raises(ConfigError, match="kind"):
        spec.input_shapes(PreprocessConfig(streams=(StreamConfig("a", "face", (8, 9), "rgb"),)))


def test_every_model_documents_its_input_and_source() -> None:
    expected = {"fusenet-intermediate", "fusenet-late", "joshi-3dcnn", "joshi-cnn-lstm", "joshi-convlstm",
                "joshi-2dcnn-vote", "twostream", "regional-lstm", "ststnet", "offapexnet", "lbptop-svm", "stcnn"}
    assert expected <= set(registry.names())
    for name in expected:
        spec = registry.get(name)
        assert spec.source and spec.description and spec.preprocess.streams
        assert spec.kind == ("sklearn" if name == "lbptop-svm" else "torch")

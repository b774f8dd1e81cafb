"""The validated, frozen configuration of one trial.

Built once at the edge (CLI, YAML file or a Ray Tune ``config``) and passed down unchanged:
nothing below this module reads environment variables or globals to decide how to train.
Every decision that the paper leaves open (see ``method-spec.md``) is a named field here with
its documented default, never a hidden constant.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from trainables.bandwidth import DOWNSAMPLING, KN_TOLERANCE, latent_channels

METHODS = ("proposed", "deepjscc", "deepjscc_ft", "deepsc")
Method = Literal["proposed", "deepjscc", "deepjscc_ft", "deepsc"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(_Frozen):
    """Where the images come from and which of them each part of a study sees.

    ``source="auto"`` reads ``{split}.npz`` or ``{split}.parquet`` from the first of
    ``search_dirs`` + ``root`` that has it, and otherwise downloads CIFAR-10 into ``root``
    through torchvision (the path users without a local copy take).

    Three disjoint image sets (``split``): the *training* images (the codec's, and a stage-0
    classifier's), the *tuning* images (every epoch is scored on them; the search sees only these
    numbers) and the *final* images (scored once at the end, never tuned on). The public
    ResNet checkpoints were trained on all 50,000 CIFAR-10 training images, so a tuning set carved
    from them is one the classifier memorised (measured: ResNet-56 88.2 % there, 82.5 % on test).
    """

    name: Literal["cifar10"] = "cifar10"
    source: Literal["auto", "torchvision", "parquet", "npz"] = "auto"
    root: str = "~/.cache/semtune/cifar10"
    search_dirs: tuple[str, ...] = ()
    split: Literal["test_halves", "train_holdout"] = Field(
        "test_halves",
        description="test_halves: tune on a seeded, stratified part of the test split and score the final "
                    "result on the rest (the default: right for the public checkpoints, which never saw test); "
                    "train_holdout: tune on images carved from train, which the classifier must then be "
                    "trained on without (stage 0 from scratch, classifier.checkpoint: null), final score on test")
    split_seed: int = Field(0, description="seed of the per-class shuffles that pick the three image sets")
    tune_per_class: int = Field(500, ge=1, description="tuning images per class")
    final_per_class: int | None = Field(
        None, ge=1, description="final-score images per class; None = all the rest of the test split")
    train_per_class: int | None = Field(None, ge=1, description="training images per class; None = all")
    final_score: bool = Field(False, description="after the last epoch, also score the trial on the final images")
    hflip: bool = Field(False, description="random horizontal flips on the training batches (on device)")
    image_size: tuple[int, int] = (32, 32)

    @field_validator("image_size")
    @classmethod
    def _whole_latent(cls, v: tuple[int, int]) -> tuple[int, int]:
        """Both encoders downsample by 4, so each side must be a positive multiple of 4 (and sane)."""
        if min(v) < DOWNSAMPLING or max(v) > 2**16 or v[0] % DOWNSAMPLING or v[1] % DOWNSAMPLING:
            raise ValueError(f"height and width must be multiples of {DOWNSAMPLING} from {DOWNSAMPLING} "
                             f"to {2**16} (got {v[0]}x{v[1]})")
        return v


class CodecConfig(_Frozen):
    """Semantic encoder/decoder. ``arch='paper'`` is Fig. 1; ``'plain'`` is Bourtsoulatze's DeepJSCC."""

    arch: Literal["paper", "plain"] = "paper"
    width: int = Field(256, ge=4, description="hidden channels of arch 'paper' (unused by 'plain')")
    channel_coding_conv: bool = Field(
        True, description="arch 'paper': the channel-coding module starts with a 3x3 conv + BN + PReLU at the "
                          "hidden width before its 3x3 conv to the latent channels (our reading; the default). "
                          "The paper names the module, not its layers; method-spec lists one conv, i.e. false")
    plain_widths: tuple[PositiveInt, ...] = Field(
        (16, 32, 32, 32), min_length=2,
        description="arch 'plain': filters of the encoder's hidden 5x5 convs (the first two stride 2), mirrored "
                    "by the decoder; default = Bourtsoulatze et al. 2019 (16, 32, 32, 32)")
    kn: float = Field(1 / 12, gt=0.0, le=1.0, description="requested bandwidth ratio k/n (complex symbols per source scalar)")
    kn_tolerance: float = Field(
        KN_TOLERANCE, gt=0.0, lt=1.0,
        description="largest relative gap |achieved - requested| / requested k/n (the latent channel count is an "
                    "integer); a kn further from every reachable ratio is refused. Default 0.25")


class ChannelConfig(_Frozen):
    """The channel model (``trainables.channel.build_channel``) at average SNR ``snr_db`` = P·E|h|²/σ².

    With ``train_snr_range_db`` the training SNR is drawn per batch. Fields named after a model
    (``coherence_symbols``, ``tdl_*``, ``ofdm_*``…) are read by that model only.
    """

    model: Literal["awgn", "rayleigh", "rayleigh_nocsi", "tdl"] = Field(
        "awgn",
        description="awgn: the paper's eq. 3. rayleigh: Rayleigh block fading, the receiver knows h and "
        "LMMSE-equalises, the decoder gets h*y/(|h|²+σ²/P). rayleigh_nocsi: the same fading, the decoder "
        "gets y = h·s + n as received. tdl: 3GPP TR 38.901 TDL over OFDM, LMMSE per resource element "
        "with perfect CSI",
    )
    snr_db: float = Field(20.0, ge=-30.0, le=60.0)
    train_snr_range_db: tuple[float, float] | None = None
    power: float = Field(1.0, gt=0.0, description="average symbol power P after normalisation")
    coherence_symbols: int | None = Field(
        None, ge=1, description="rayleigh*: consecutive complex symbols sharing one gain; None = one gain per image")
    tdl_profile: Literal["A", "B", "C", "D", "E"] = Field("A", description="tdl: TR 38.901 profile (A-C NLoS, D-E LoS)")
    tdl_delay_spread_ns: float = Field(100.0, gt=0.0, le=10_000.0,
                                       description="tdl: RMS delay spread (TR 38.901 'nominal': 100 ns)")
    ofdm_subcarriers: int = Field(64, ge=1, le=4096, description="tdl: subcarriers per OFDM symbol (FFT size)")
    ofdm_subcarrier_spacing_khz: float = Field(30.0, gt=0.0, le=960.0, description="tdl: subcarrier spacing")
    carrier_frequency_ghz: float = Field(3.5, gt=0.0, le=100.0, description="tdl: carrier (sets the Doppler shift)")
    speed_mps: float = Field(0.0, ge=0.0, le=200.0,
                             description="tdl: receiver speed, Doppler across one image's OFDM symbols; 0 = static")

    @field_validator("train_snr_range_db")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and v[0] > v[1]:
            raise ValueError(f"low must not exceed high (got {v[0]} > {v[1]})")
        return v


class ClassifierConfig(_Frozen):
    """The downstream model and its stage 0 (preparation for the dataset at hand).

    ``checkpoint``: a file path, ``"auto"`` (look for the public akamaster file in
    ``search_dirs`` and the cache, download it otherwise) or ``None`` (random init; train it
    in stage 0 for ``finetune_epochs``, which must then be > 0 unless ``allow_untrained``).
    """

    arch: Literal["resnet56", "resnet20"] = "resnet56"
    checkpoint: str | None = "auto"
    search_dirs: tuple[str, ...] = ()
    finetune_epochs: int = Field(0, ge=0, description="stage 0: epochs of fine-tuning on the clean training split")
    finetune_lr: float = Field(0.01, gt=0.0)
    cache_dir: str = "~/.cache/semtune/classifiers"
    finetune_backbone: bool = Field(False, description="stage 2 also trains the backbone (paper: classifier only)")
    allow_untrained: bool = Field(
        False, description="accept checkpoint: null with finetune_epochs: 0, i.e. a randomly initialised classifier "
                           "(benchmarks, shape tests); refused by default since its accuracy means nothing")


class LossConfig(_Frozen):
    """Loss weights of eq. 9 and 10 and the semantic contrastive loss of eq. 7."""

    alpha1: float | Literal["kn"] = Field("kn", description="stage-1 weight of L_rec; 'kn' = the paper's alpha1 = k/n")
    alpha2: float = Field(0.5, ge=0.0, le=1.0, description="stage-2 weight of L_rec")
    tau: float = Field(0.1, gt=0.0, description="temperature of the contrastive loss")
    proj_dim: int = Field(32, ge=1, description="output dimension of the projection head")
    contrastive: Literal["eq7", "infonce"] = Field("eq7", description="eq7: as printed (positive not in denominator)")
    ce_class_normalised: bool = Field(
        False, description="multiply the cross-entropy L_Task by 1/N_cls as eq. 11 prints it; the default (false) "
                           "omits the factor, which only rescales L_Task against L_rec (as a change of alpha2 would)")

    @field_validator("alpha1")
    @classmethod
    def _alpha_in_unit_interval(cls, v: float | str) -> float | str:
        if isinstance(v, float) and not 0.0 <= v <= 1.0:
            raise ValueError(f"must be in [0, 1] or 'kn' (got {v})")
        return v


class StageConfig(_Frozen):
    """Adam with a step schedule (the paper: halve the learning rate every 50 epochs)."""

    epochs: int = Field(ge=0)
    lr: float = Field(gt=0.0)
    lr_step_epochs: int = Field(50, ge=1)
    lr_gamma: float = Field(0.5, gt=0.0, le=1.0)


class TrialConfig(_Frozen):
    """Everything that determines one two-stage trial."""

    method: Method = "proposed"
    data: DataConfig = DataConfig()
    codec: CodecConfig = CodecConfig()
    channel: ChannelConfig = ChannelConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    loss: LossConfig = LossConfig()
    stage1: StageConfig = StageConfig(epochs=200, lr=0.01)
    stage2: StageConfig = StageConfig(epochs=100, lr=1e-4)
    batch_size: int = Field(128, ge=2, description="training batch (>= 2: the contrastive loss needs negatives)")
    eval_batch_size: int = Field(500, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None = leave torch's default")

    @model_validator(mode="after")
    def _tuning_images_unseen(self) -> "TrialConfig":
        """``train_holdout`` tunes on training images: a classifier loaded from a checkpoint saw them."""
        if self.data.split == "train_holdout" and self.classifier.checkpoint is not None:
            raise ValueError("data.split: 'train_holdout' tunes on training images that a classifier checkpoint "
                             "was trained on; use 'test_halves', or classifier.checkpoint: null with "
                             "finetune_epochs > 0")
        return self

    @model_validator(mode="after")
    def _trained_classifier(self) -> "TrialConfig":
        """A random classifier makes every accuracy (and stage 2 of the proposed method) meaningless."""
        c = self.classifier
        if c.checkpoint is None and c.finetune_epochs == 0 and not c.allow_untrained:
            raise ValueError("classifier.checkpoint: null with finetune_epochs: 0 leaves the classifier untrained; "
                             "give a checkpoint, finetune_epochs > 0, or allow_untrained: true")
        return self

    @model_validator(mode="after")
    def _reachable_bandwidth(self) -> "TrialConfig":
        h, w = self.data.image_size
        try:
            latent_channels(self.codec.kn, h, w, tolerance=self.codec.kn_tolerance)
        except ValueError as err:
            raise ValueError(f"codec.kn: {err}") from None
        return self

    # -- derived values, computed in one place -------------------------------------------------
    @property
    def alpha1(self) -> float:
        """The stage-1 weight, resolving the paper's ``alpha1 = k/n`` heuristic to the achieved k/n."""
        return self.kn_achieved if self.loss.alpha1 == "kn" else float(self.loss.alpha1)

    @property
    def kn_achieved(self) -> float:
        h, w = self.data.image_size
        return latent_channels(self.codec.kn, h, w, tolerance=self.codec.kn_tolerance).kn_achieved

    @property
    def stage_epochs(self) -> tuple[int, int]:
        """Epochs of (stage 1, stage 2) for this method; DeepJSCC has no stage 2."""
        return (self.stage1.epochs, 0 if self.method == "deepjscc" else self.stage2.epochs)

    @property
    def total_epochs(self) -> int:
        return sum(self.stage_epochs)

    def digest(self) -> str:
        """A short stable hash of the whole config (names cache entries and runs)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# -- building configs at the edge ------------------------------------------------------------------


class ConfigError(ValueError):
    """A config is invalid. ``problems`` holds ``(field path, reason)`` pairs, one per problem."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in problems))

    def lines(self) -> list[str]:
        """One line per problem: a line break inside a key or a value is written escaped."""
        return [f"error: {path}: {reason}".translate(_ESCAPED_BREAKS) for path, reason in self.problems]


_ESCAPED_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def problems_from_validation_error(err: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """Turn pydantic's errors into one ``(dotted.field.path, reason)`` pair each."""
    out = []
    for e in err.errors():
        loc = ".".join(_key(p) for p in e["loc"] if not str(p).startswith(("function-", "<", "[key]")))
        msg = e["msg"].removeprefix("Value error, ")
        if not loc and (named := _FIELD_PREFIX.match(msg)):  # a rule across fields names the one to change
            loc, msg = named["field"], named["reason"]
        path = ".".join(p for p in (prefix, loc) if p) or "<root>"
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif ("input" in e and e["type"] != "missing" and not isinstance(e["input"], (dict, list))
              and "(got " not in msg and _shown(e["input"], str) not in msg):
            msg = f"{msg} (got {_shown(e['input'], repr)})"
        out.append((path, msg))
    return out


_FIELD_PREFIX = re.compile(r"^(?P<field>[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+): (?P<reason>.+)$", re.S)


def _key(part: str | int) -> str:
    """A key in a field path, quoted when blank or when spaces, colons or line breaks would blur the line."""
    text = str(part)
    odd = not text or ":" in text or not text.isprintable() or any(c.isspace() for c in text)
    return repr(text) if isinstance(part, str) and odd else text


def _shown(value: Any, show=repr, limit: int = 80) -> str:
    """``value`` for an error line: short (a 100 kB string stays readable), even for an int too long to print."""
    try:
        text = show(value)
    except ValueError:
        return f"<{type(value).__name__} too long to print>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def set_dotted(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``doc`` with ``a.b.c = value`` set (for ``--set`` overrides)."""
    out = copy.deepcopy(dict(doc))  # not a JSON round trip: YAML dates and sets are not JSON
    node = out
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[leaf] = value
    return out


def resolve_paths(doc: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """Make the relative file paths of a config document absolute against ``base``.

    Trials may run on other nodes and in other working directories, so paths are pinned
    where the file that names them lives.
    """
    out = copy.deepcopy(dict(doc))  # not a JSON round trip: YAML dates and sets are not JSON
    problems: list[tuple[str, str]] = []

    def fix(section: str, key: str, many: bool) -> None:
        node = out.get(section)
        if not isinstance(node, dict) or node.get(key) in (None, "auto"):
            return
        values = node[key] if many else [node[key]]
        if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
            return  # leave the type error to validation
        try:
            fixed = [str((base / Path(v).expanduser()).resolve()) if not v.startswith("~") else v for v in values]
        except (ValueError, OSError, RuntimeError) as err:  # a NUL byte, a symlink loop
            problems.append((f"{section}.{key}", f"not a usable path: {err}"))
            return
        node[key] = fixed if many else fixed[0]

    for section, key, many in (
        ("data", "root", False),
        ("data", "search_dirs", True),
        ("classifier", "checkpoint", False),
        ("classifier", "search_dirs", True),
        ("classifier", "cache_dir", False),
    ):
        fix(section, key, many)
    if problems:
        raise ConfigError(problems)
    return out


def build_trial_config(doc: Mapping[str, Any]) -> TrialConfig:
    """Validate a plain document into a :class:`TrialConfig`, or raise :class:`ConfigError`."""
    if not isinstance(doc, Mapping):
        raise ConfigError([("<root>", f"expected a mapping of fields, got {type(doc).__name__}")])
    try:
        return TrialConfig.model_validate(dict(doc))
    except ValidationError as err:
        raise ConfigError(problems_from_validation_error(err)) from None

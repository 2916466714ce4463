"""Adversarial training of the healing networks (TagGAN, VA-GAN): their training step.

WGAN-GP's alternation (``critic_steps`` critic updates per generator update, two
optimisers) does not fit the supervised step, so the healing methods bring their own
:class:`HealingStep`; the one training loop (:mod:`~CXRWeakLocLib.train.engine`) runs
it as it runs every step: seeds, progress, ``log.csv`` and TensorBoard, resumable
checkpoints and the saved model are the loop's.

Every loss weight and the schedule are named settings of the run's ``[loss]``
table (:class:`GANSettings`). One epoch is ``steps_per_epoch`` generator steps;
``[optim] epochs``, ``batch_size``, ``lr`` and ``checkpoint_every`` keep their
meaning. A person can watch a run: ``samples/step_NNNNNN.png`` grids (input, map,
healed) every ``sample_every`` steps, losses per epoch in ``log.csv`` and
TensorBoard; a killed run resumes from its last checkpoint. A NaN loss or a
critic loss beyond ``max_critic_loss`` stops the run with a one-line
:class:`TrainingDivergedError` message, and nothing of the diverged epoch is saved.

Batches pair each abnormal image ``x`` with a finding ``c`` it has (findings drawn
uniformly, then an image having it), a real image *without* ``c`` for the normal
critic and another image *with* ``c`` for the abnormal critic; the critics have
one head per finding. DistributedDataParallel is not supported (the gradient
penalty's double backward); healing runs use one process and one device.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ...core.errors import ConfigError, CXRWeakLocError, refuse_unknown
from ...core.masks import normalize_heatmap, parse_mask_rule
from ...data.dataset import records_dataset
from ...data.records import ImageRecord, label_vector
from ...losses import gradient_penalty
from ...train.logs import RunLogs
from ...train.step import TrainingContext
from ...train.validation import classification_figures, operating_thresholds
from ..base import Smoke
from .network import Critic, HealingNet

__all__ = ["HEALING_SMOKE", "AdversarialRecipe", "GANSettings", "HealingStep", "PairSampler",
           "TrainingDivergedError", "calibrate_scores", "map_spread"]

logger = logging.getLogger(__name__)

#: The healing methods' smallest settings (a tiny U-Net, one generator step per epoch).
HEALING_SMOKE = Smoke(options={"channels": [8, 8], "critic_width": 4},
                      loss={"steps_per_epoch": 1, "critic_steps": 1, "sample_every": 0})


class TrainingDivergedError(CXRWeakLocError):
    """A GAN run that produced NaN or exploding losses (nothing was saved past it)."""


@dataclass(frozen=True)
class GANSettings:
    """The ``[loss]`` table of a GAN run: every weight and the schedule, by name.

    Attributes:
        steps_per_epoch: generator steps per epoch (logs and checkpoints per epoch).
        critic_steps: critic updates per generator update.
        warmup_generator_steps: for the first this many generator steps, and every
            ``warmup_every``-th, the critic gets ``warmup_critic_steps`` updates
            (VA-GAN: 25, 100, 100); 0 turns it off.
        warmup_critic_steps: critic updates in those steps.
        warmup_every: period of the extra critic training (0: only at the start).
        lambda_gp: gradient-penalty weight (WGAN-GP).
        adversarial: weight of the normal critic's term in the generator loss.
        adversarial_abnormal: weight of the abnormal critic's term (TagGAN only).
        cycle: weight of ``|x - G_NA(x - M)|_1`` (TagGAN only).
        sparsity: weight of the map's L1 norm ``|M|_1`` (mean over pixels).
        identity: weight of ``|G(x', c)|_1`` for images ``x'`` without ``c``: a
            healthy image heals to itself (Fixed-Point GAN's conditional identity).
        beta1, beta2: Adam betas of both optimisers (TagGAN 0.5/0.999, VA-GAN 0/0.9).
        critic_lr: critic learning rate (0: ``[optim] lr``).
        sample_every: generator steps between sample grids (0: never).
        sample_count: images in a sample grid.
        max_critic_loss: a critic loss beyond this magnitude stops the run.
        mask_rule: the card's default constraint function, ``name:value``.
    """

    steps_per_epoch: int = 100
    critic_steps: int = 5
    warmup_generator_steps: int = 0
    warmup_critic_steps: int = 100
    warmup_every: int = 0
    lambda_gp: float = 10.0
    adversarial: float = 1.0
    adversarial_abnormal: float = 1.0
    cycle: float = 10.0
    sparsity: float = 100.0
    identity: float = 0.0
    beta1: float = 0.5
    beta2: float = 0.999
    critic_lr: float = 0.0
    sample_every: int = 100
    sample_count: int = 4
    max_critic_loss: float = 1e4
    mask_rule: str = "fraction_of_max:0.5"

    @classmethod
    def from_dict(cls, values: dict) -> GANSettings:
        refuse_unknown(values, cls, "[loss]: unknown GAN setting(s)")
        try:
            settings = cls(**values)
        except TypeError as error:
            raise ConfigError(f"[loss]: {error}") from None
        if settings.steps_per_epoch < 1 or settings.critic_steps < 1:
            raise ConfigError("[loss]: steps_per_epoch and critic_steps must be >= 1")
        return settings

    def critic_updates(self, step: int) -> int:
        """Critic updates before generator step ``step`` (0-based)."""
        warm = step < self.warmup_generator_steps or (
            self.warmup_every > 0 and step > 0 and step % self.warmup_every == 0)
        return self.warmup_critic_steps if warm and self.warmup_generator_steps else \
            self.critic_steps


class PairSampler:
    """Draws (abnormal image, its finding, image without it, other image with it) batches."""

    def __init__(self, dataset, labels: np.ndarray, known: np.ndarray, batch_size: int) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        positive, negative = (labels > 0) & (known > 0), (labels == 0) & (known > 0)
        self.classes = [c for c in range(labels.shape[1])
                        if positive[:, c].any() and negative[:, c].any()]
        if not self.classes:
            raise ConfigError("no finding has both positive and negative training images")
        self.positives = {c: np.flatnonzero(positive[:, c]) for c in self.classes}
        self.negatives = {c: np.flatnonzero(negative[:, c]) for c in self.classes}
        self.generator = torch.Generator()

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def _pick(self, pool: np.ndarray) -> int:
        return int(pool[torch.randint(len(pool), (1,), generator=self.generator).item()])

    def _image(self, index: int) -> torch.Tensor:
        return torch.as_tensor(self.dataset[index]["image"]).float()

    def draw(self, device: torch.device) -> dict[str, torch.Tensor]:
        classes = [self.classes[int(i)] for i in torch.randint(
            len(self.classes), (self.batch_size,), generator=self.generator)]
        items: dict[str, list] = {"image": [], "normal": [], "abnormal": []}
        for c in classes:
            items["image"].append(self._image(self._pick(self.positives[c])))
            items["normal"].append(self._image(self._pick(self.negatives[c])))
            items["abnormal"].append(self._image(self._pick(self.positives[c])))
        batch = {k: torch.stack(v).to(device) for k, v in items.items()}
        batch["finding"] = torch.tensor(classes, device=device)
        return batch


class AdversarialRecipe:
    """Networks and losses of one healing method; subclasses define the two losses."""

    def __init__(self, net: HealingNet, settings: GANSettings, num_classes: int) -> None:
        self.net = net
        self.settings = settings
        self.generators = nn.ModuleDict({"map": net})
        self.critics = nn.ModuleDict({"normal": Critic(num_classes, net.options.critic_width)})
        self.noise = torch.Generator().manual_seed(0)

    def _penalised(self, name: str, real: torch.Tensor, fake: torch.Tensor,
                   classes: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        critic = self.critics[name]
        distance = critic(fake, classes).mean() - critic(real, classes).mean()
        penalty = gradient_penalty(lambda images: critic(images, classes), real, fake,
                                   self.noise)
        return distance + self.settings.lambda_gp * penalty, distance.item(), penalty.item()

    def _map_terms(self, batch: dict, healed: torch.Tensor, generated: torch.Tensor
                   ) -> tuple[torch.Tensor, dict[str, float]]:
        s, classes = self.settings, batch["finding"]
        adversarial = -self.critics["normal"](healed, classes).mean()
        sparsity = generated.abs().mean()
        loss = s.adversarial * adversarial + s.sparsity * sparsity
        parts = {"g_adv_normal": adversarial.item(), "g_sparsity": sparsity.item()}
        if s.identity:
            identity = self.net.map(batch["normal"], classes).abs().mean()
            loss = loss + s.identity * identity
            parts["g_identity"] = identity.item()
        return loss, parts

    def critic_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def generator_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError





def _check(step: int, critic: float, parts: dict[str, float], limit: float) -> None:
    bad = sorted(name for name, value in parts.items() if not math.isfinite(value))
    if bad or not math.isfinite(critic):
        raise TrainingDivergedError(f"training diverged at generator step {step}: "
                               f"{', '.join(bad) or 'critic loss'} is NaN/inf; nothing saved "
                               f"past the last checkpoint (lower [optim] lr)")
    if abs(critic) > limit:
        raise TrainingDivergedError(f"training diverged at generator step {step}: critic loss "
                               f"{critic:.3g} exceeds max_critic_loss {limit:g}; nothing saved "
                               f"past the last checkpoint (lower [optim] lr or raise lambda_gp)")


def _labels(records: list[ImageRecord], findings: list[str]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [label_vector(record, findings) for record in records]
    return (np.stack([p[0] for p in pairs]).astype(np.float32),
            np.stack([p[1] for p in pairs]).astype(np.float32))


def _heal_for_inspection(net: HealingNet, images: torch.Tensor, classes: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``net.heal`` in eval mode without gradients, leaving the training mode as it was."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        healed, generated = net.heal(images, classes)
    net.train(was_training)
    return healed, generated


#: Below this :func:`map_spread`, the map generator is taken to ignore its input.
COLLAPSED_SPREAD = 0.1


def map_spread(net: HealingNet, images: torch.Tensor, classes: torch.Tensor) -> float:
    """How much the maps of different images differ: ``mean|M - mean_i M| / mean|M|``.

    A generator that has collapsed onto one input-independent pattern (a known GAN
    failure: the same global shift for every image) scores about 0; maps that follow
    each image's own finding score near 1 or more. Needs at least two images.
    """
    _, maps = _heal_for_inspection(net, images, classes)
    magnitude = float(maps.abs().mean())
    if magnitude == 0.0:
        return 0.0
    return float((maps - maps.mean(dim=0, keepdim=True)).abs().mean()) / magnitude


def _write_samples(net: HealingNet, images: torch.Tensor, classes: torch.Tensor,
                   path: Path, logs: RunLogs, step: int) -> None:
    """A grid: one row per image: input | |M| | healed (each scaled to 0-255)."""
    healed, generated = _heal_for_inspection(net, images, classes)
    rows = []
    for x, m, y in zip(images[:, 0].cpu().numpy(), generated[:, 0].abs().cpu().numpy(),
                       healed[:, 0].cpu().numpy(), strict=True):
        low, high = float(x.min()), max(float(x.max()), float(x.min()) + 1e-6)
        x, y = (np.clip((a - low) / (high - low), 0, 1) for a in (x, y))
        rows.append(np.concatenate([x, normalize_heatmap(m), y], axis=1))
    grid = (np.concatenate(rows, axis=0) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    logs.image("samples", grid, step)


def calibrate_scores(scores: np.ndarray, labels: np.ndarray, known: np.ndarray,
                     iterations: int = 50, ridge: float = 1e-3
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-finding logistic fit ``P = sigmoid(w * score + b)`` (Newton's method).

    Scores are standardised first; findings without both classes keep ``w = 1``
    and a bias that puts the mean score at probability 0.5.
    """
    weights, biases = np.ones(scores.shape[1]), np.zeros(scores.shape[1])
    for c in range(scores.shape[1]):
        mask = known[:, c] > 0
        s, y = scores[mask, c].astype(np.float64), labels[mask, c].astype(np.float64)
        mean, std = (float(s.mean()), float(s.std()) or 1.0) if len(s) else (0.0, 1.0)
        if len(y) == 0 or y.min() == y.max():
            weights[c], biases[c] = 1.0 / std, -mean / std
            continue
        z = np.stack([(s - mean) / std, np.ones_like(s)], axis=1)
        theta = np.zeros(2)
        for _ in range(iterations):
            p = 1 / (1 + np.exp(-z @ theta))
            gradient = z.T @ (p - y) + ridge * theta
            hessian = (z * (p * (1 - p))[:, None]).T @ z + ridge * np.eye(2)
            theta -= np.linalg.solve(hessian, gradient)
        weights[c], biases[c] = theta[0] / std, theta[1] - theta[0] * mean / std
    return weights.astype(np.float32), biases.astype(np.float32)


def _scores(net: HealingNet, dataset, device: torch.device, batch_size: int) -> np.ndarray:
    net.eval()
    scores = []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            images = torch.stack([torch.as_tensor(dataset[i]["image"]).float()
                                  for i in range(start, min(len(dataset), start + batch_size))])
            _, maps = net(images.to(device))
            scores.append(net.scores(maps).float().cpu().numpy())
    return np.concatenate(scores)




class HealingStep:
    """One generator step of a healing method (after its critic updates), for the loop.

    Args:
        context: what the loop built; ``context.network`` is the healing network.
        recipe: the method's :class:`AdversarialRecipe` class.
    """

    progress = ("critic", "generator")

    def __init__(self, context: TrainingContext, recipe: type[AdversarialRecipe]) -> None:
        config, setup = context.config, context.setup
        net = context.network
        if not isinstance(net, HealingNet):
            raise ConfigError(f"method {setup.card.method!r} does not build a healing network")
        self.context = context
        self.settings = settings = GANSettings.from_dict(config.loss)
        setup.card.mask_rule = parse_mask_rule(settings.mask_rule)
        self.recipe = recipe(net, settings, len(setup.findings))
        self.recipe.generators.to(context.device)
        self.recipe.critics.to(context.device)
        betas = (settings.beta1, settings.beta2)
        self.g_opt = torch.optim.Adam(self.recipe.generators.parameters(), lr=config.optim.lr,
                                      betas=betas)
        self.d_opt = torch.optim.Adam(self.recipe.critics.parameters(),
                                      lr=settings.critic_lr or config.optim.lr, betas=betas)
        records = setup.train_records
        labels, known = _labels(records, setup.findings)
        self.sampler = PairSampler(context.dataset, labels, known, config.optim.batch_size)
        items = [int(self.sampler.positives[c][0])
                 for c in self.sampler.classes][:settings.sample_count]
        sample_ds = records_dataset([records[i] for i in items], setup.card)
        self.sample_images = torch.stack([torch.as_tensor(sample_ds[i]["image"]).float()
                                          for i in range(len(sample_ds))]).to(context.device)
        self.sample_classes = torch.tensor(
            [int(np.flatnonzero((labels[i] > 0) & (known[i] > 0))[0]) for i in items],
            device=context.device)
        logger.info("%d findings have both positive and negative training images",
                    len(self.sampler.classes))

    def state(self) -> dict[str, dict]:
        return {"generators": self.recipe.generators.state_dict(),
                "critics": self.recipe.critics.state_dict(),
                "g_opt": self.g_opt.state_dict(), "d_opt": self.d_opt.state_dict()}

    def load_state(self, parts: dict[str, dict]) -> None:
        self.recipe.generators.load_state_dict(parts["generators"])
        self.recipe.critics.load_state_dict(parts["critics"])
        self.g_opt.load_state_dict(parts["g_opt"])
        self.d_opt.load_state_dict(parts["d_opt"])

    def epoch_items(self, epoch: int, seed: int) -> range:
        self.sampler.seed(seed)
        self.recipe.noise.manual_seed(seed)
        self.recipe.generators.train()
        self.recipe.critics.train()
        first = epoch * self.settings.steps_per_epoch
        return range(first, first + self.settings.steps_per_epoch)

    def step(self, step: int) -> dict[str, float]:
        recipe, device = self.recipe, self.context.device
        for _ in range(self.settings.critic_updates(step)):
            critic_loss, critic_parts = recipe.critic_loss(self.sampler.draw(device))
            self.d_opt.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.d_opt.step()
        for parameter in recipe.critics.parameters():
            parameter.requires_grad_(False)
        generator_loss, generator_parts = recipe.generator_loss(self.sampler.draw(device))
        self.g_opt.zero_grad(set_to_none=True)
        generator_loss.backward()
        self.g_opt.step()
        for parameter in recipe.critics.parameters():
            parameter.requires_grad_(True)
        parts = {"critic": critic_loss.item(), **critic_parts,
                 "generator": generator_loss.item(), **generator_parts}
        _check(step + 1, parts["critic"], parts, self.settings.max_critic_loss)
        every = self.settings.sample_every
        if every and (step + 1) % every == 0 and self.context.logs is not None:
            _write_samples(recipe.net, self.sample_images, self.sample_classes,
                           self.context.setup.run_dir / "samples" / f"step_{step + 1:06d}.png",
                           self.context.logs, step + 1)
        return parts

    def epoch_row(self, epoch: int, means: dict[str, float]) -> dict:
        spread = map_spread(self.recipe.net, self.sample_images, self.sample_classes)
        if spread < COLLAPSED_SPREAD:
            logger.warning("epoch %d: the map generator ignores its input (map spread %.3f < "
                           "%g): the GAN has collapsed onto one pattern for every image",
                           epoch + 1, spread, COLLAPSED_SPREAD)
        return {"step": (epoch + 1) * self.settings.steps_per_epoch, **means,
                "map_spread": spread}

    def finish(self) -> dict:
        """Fit the map-score calibration and the operating thresholds on the validation
        images (the training images when there are none)."""
        setup, net = self.context.setup, self.recipe.net
        records = setup.val_records or setup.train_records
        dataset = records_dataset(records, setup.card)
        scores = _scores(net, dataset, self.context.device, self.context.config.optim.batch_size)
        labels, known = _labels(records, setup.findings)
        net.set_calibration(*calibrate_scores(scores, labels, known))
        probs = 1 / (1 + np.exp(-(scores * net.score_weight.cpu().numpy()
                                  + net.score_bias.cpu().numpy())))
        card = setup.card
        card.operating_thresholds = operating_thresholds(probs, labels, known, setup.findings)
        validation = classification_figures(probs, labels, known, setup.findings)
        card.metrics["validation"] = {"images": len(records), **validation}
        card.metrics["map_spread"] = map_spread(net, self.sample_images, self.sample_classes)
        return validation

"""The training loop: one :class:`Trainer` for every model, SDE and device count.

Reproducibility and resumption rest on one rule: every random draw of optimizer step ``s`` (data order,
preprocessing and augmentation, diffusion times / noise levels, noise, label dropout, dropout) comes from
generators seeded by ``(seed, s)``, and the draws for the *global* batch are made on every rank, each rank taking
its slice. Hence

* a run resumed from the checkpoint of step ``s`` continues exactly as if it had never stopped, and
* ``W`` DDP ranks compute the same update as one process with the same global batch (dropout aside).

A class-conditional model (``model.num_classes`` > 0) trains on the dataset's labels, passed to the network as
``cond={"class_labels": y}``; with ``training.label_dropout = p`` each label becomes the null label ``-1`` with
probability ``p`` (classifier-free guidance training, Ho & Salimans 2022).

Rank 0 logs (progress bar, TensorBoard, ``metrics.jsonl``: :mod:`~scoresde.training.metrics_log`), evaluates,
samples snapshots and writes atomic checkpoints; a non-finite loss stops the run with an error naming the step and
the checkpoint a resume starts from (:mod:`~scoresde.training.divergence`), or skips the step
(``training.nonfinite=skip``, at most ``training.max_skips`` in a row). While training, rank 0 holds a lock on the
workdir (:mod:`~scoresde.training.lock`), and ``SIGTERM``/``SIGINT`` stop the run at the next step boundary after a
pre-emption checkpoint (:mod:`~scoresde.training.signals`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import signal
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..checkpoint.run import list_checkpoints, save_training_checkpoint
from ..config import Config
from ..data import inverse_data_scaler, preprocess
from ..data.augment import AugmentPipe, augment_rows
from ..data.image_grid import save_image_grid
from ..models import ScoreModel
from ..models.score_model import autocast_dtype
from ..nets import NULL_LABEL
from ..sampling import SAMPLERS, sample
from .build import build_model, build_optimizer, check_objective, compute_loss, training_times
from .data import StepBatchSampler, build_dataset, check_dataset_labels, global_batch_indices, make_loader
from .distributed import DistEnv, init_distributed
from .divergence import divergence_message, set_aside_diverged
from .ema import ema_from_config
from .lock import WorkdirLock
from .metrics_log import append_metrics, truncate_metrics
from .plots import scatter_panels
from .signals import StopSignals, TrainingInterrupted
from .state import find_resumable, read_init_weights
from .workdir import check_workdir_config, prepare_workdir


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class CompileError(ValueError):
    """``training.compile=true`` and ``torch.compile`` could not compile the network on this machine (a missing C++
    compiler or Triton, an unsupported operation). Raised at the first training step, where compilation happens,
    naming the backend's reason (the first two lines of its message); nothing is written before the first
    step ends, so the run folder is left as it was."""


def _compile_failure(err: BaseException) -> bool:
    """Whether ``err`` is torch.compile's own failure (dynamo or the backend), not an error of the model."""
    return isinstance(err, torch._dynamo.exc.TorchDynamoException)


def apply_label_dropout(labels: Tensor, p: float, uniforms: Tensor) -> Tensor:
    """Label dropout for classifier-free guidance training (Ho & Salimans 2022, Algorithm 1): each label becomes
    :data:`~scoresde.nets.NULL_LABEL` where its uniform draw ``uniforms`` (same shape, in ``[0, 1)``) is ``< p``, so
    with probability ``p``; ``p = 0`` returns ``labels`` unchanged. The draws are an argument so that the trainer
    takes them from its per-step streams (exact resumption)."""
    if not 0 <= p < 1:
        raise ValueError(f"label dropout probability must lie in [0, 1), got {p}")
    if uniforms.shape != labels.shape:
        raise ValueError(f"uniforms of shape {tuple(uniforms.shape)} for labels of shape {tuple(labels.shape)}")
    return torch.where(uniforms.to(labels.device) < p, torch.full_like(labels, NULL_LABEL), labels)


def step_seed(seed: int, step: int, stream: int) -> int:
    """Seed of random stream ``stream`` (0: preprocessing, 1: diffusion draws, 2: dropout) at ``step``."""
    return ((seed * 1_000_003 + step) * 8191 + stream) % (2**63 - 1)


class Trainer:
    """Train ``cfg`` in ``workdir`` (resuming from its newest valid checkpoint if there is one).

    Args:
        cfg: the validated run config.
        workdir: run folder: ``config.json``, ``checkpoints/``, ``samples/``, ``tb/``, ``metrics.jsonl``.
        device: ``"cpu"``, ``"cuda"``, ... (default: this rank's GPU if any, else CPU).
        progress: show a progress bar on rank 0.
    """

    def __init__(self, cfg: Config, workdir: str | Path, *, device: str | None = None, progress: bool = False) -> None:
        self.cfg, self.workdir, self.progress = cfg, Path(workdir), progress
        check_workdir_config(self.workdir, cfg)
        self.env: DistEnv = init_distributed(device)
        # the data first: a wrong path or image size is reported before any network is built
        self.train_set = build_dataset(cfg.data, "train", cfg.seed)
        self.eval_set = build_dataset(cfg.data, cfg.data.eval_split, cfg.seed) if cfg.training.eval_freq else None
        #: number of classes of a class-conditional model (0: unconditional, the labels are not used)
        self.num_classes = int(cfg.model.get("num_classes", 0) or 0)
        if self.num_classes:
            check_dataset_labels(self.train_set, self.num_classes, f"{cfg.data.dataset} (train)")
            if self.eval_set is not None:
                check_dataset_labels(self.eval_set, self.num_classes, f"{cfg.data.dataset} ({cfg.data.eval_split})")
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.model: ScoreModel = build_model(cfg).to(self.env.device)
        check_objective(cfg, self.model)
        self.ema = ema_from_config(cfg, self.model.net)  # model.ema_rate or training.ema_halflife_kimg
        #: EDM's augmentation of the training batches (training.augment_p > 0), else None
        self.augment = AugmentPipe(p=cfg.training.augment_p) if cfg.training.augment_p else None
        self.optimizer = build_optimizer(cfg, self.model.net.parameters())
        self.scaler = torch.amp.GradScaler(self.env.device.type, enabled=cfg.training.amp == "fp16")
        #: the autocast dtype of the training step (None: float32); training.amp='auto' picks bf16 where native
        self.amp_dtype = (autocast_dtype("auto", self.env.device) if cfg.training.amp == "auto"
                          else {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.training.amp))
        self.step = 0
        self.skipped_steps = 0
        self.consecutive_skips = 0  # non-finite steps skipped in a row just before this step
        self._window: list[float] = []  # losses of the steps since the last log line (carried by checkpoints)
        self._saved: tuple[int, Path | None] = (-1, None)  # (step, path) of the newest checkpoint written
        self._lock = WorkdirLock(self.workdir) if self.env.is_main else None  # taken by resume/init_from/train
        self.last_snapshot: tuple[int, Tensor] | None = None  # (step, samples) of the newest snapshot grid
        self._periodic_s = 0.0  # evaluation/checkpoint/snapshot seconds of the current log window (not training)
        self.train_model = self._wrap_for_training()
        self._writer = None

    # ---- set-up ------------------------------------------------------------------------------------------------
    def _wrap_for_training(self) -> ScoreModel:
        net = self.model.net
        if self.cfg.training.compile:
            net = torch.compile(net)
        if self.env.world_size > 1:
            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)
        return self.model.with_net(net)

    def resume(self) -> bool:
        """Load the newest valid checkpoint of the workdir, if any; returns whether one was found (a workdir whose
        checkpoints all fail to load is one error line naming each and why, not a fresh start). Takes the workdir
        lock (:class:`~scoresde.training.lock.WorkdirLockedError` if another process trains it) and cuts
        ``metrics.jsonl`` back to the checkpoint's step, so that no record is duplicated when those steps are
        trained again."""
        self._acquire_lock()
        state = find_resumable(self.workdir, map_location=self.env.device)
        metrics = self.workdir / "metrics.jsonl"
        if state is None:
            if self.env.is_main:
                truncate_metrics(metrics, 0)
            return False
        self.model.net.load_state_dict(state.model_state)
        self.ema.load_full_state_dict(state.ema_state, num_updates=int(state.trainer_state["ema_num_updates"]),
                                      num_images=state.trainer_state.get("ema_num_images"))
        self.optimizer.load_state_dict(state.optimizer_state)
        if state.trainer_state.get("scaler"):
            self.scaler.load_state_dict(state.trainer_state["scaler"])
        self.step = state.step
        self.skipped_steps = int(state.trainer_state.get("skipped_steps", 0))
        self.consecutive_skips = int(state.trainer_state.get("consecutive_skips", 0))
        self._window = [float(v) for v in state.trainer_state.get("loss_window", [])]
        if self.env.is_main:
            truncate_metrics(metrics, self.step, drop_train_at_step=bool(self._window))
        return True

    def _acquire_lock(self) -> None:
        if self._lock is not None:
            self._lock.acquire()

    def release_lock(self) -> None:
        """Release the workdir lock (:meth:`train` does on return; for a :meth:`resume` not followed by it)."""
        if self._lock is not None:
            self._lock.release()

    def init_from(self, source: str | Path) -> str:
        """Start a fine-tuning run from another run's weights (``scoresde train --init-from``); returns what was
        loaded.

        Online and EMA weights (with the EMA's update count, so its decay continues at the target rate) come from
        ``source`` (see :func:`~scoresde.training.state.read_init_weights`: a run folder, a checkpoint directory or
        an original Score SDE checkpoint file); the optimizer and the step start afresh, as in FP-Diffusion's
        fine-tuning. Only for a run that has not started: a workdir with checkpoints resumes instead, so the same
        command line continues an interrupted fine-tuning run. The source is recorded in ``init_from.json``.
        """
        self._acquire_lock()
        if self.step != 0 or list_checkpoints(self.workdir):
            raise ValueError(f"{self.workdir} already has checkpoints: resume it instead of --init-from")
        init = read_init_weights(source, self.model.net, map_location=self.env.device)
        self.model.net.load_state_dict(init.model_state)
        self.ema.load_full_state_dict(init.ema_state, num_updates=init.ema_num_updates)
        if self.env.is_main:
            self.workdir.mkdir(parents=True, exist_ok=True)
            record = {"source": str(Path(source).resolve()), "loaded": init.description, "source_step": init.step}
            (self.workdir / "init_from.json").write_text(json.dumps(record, indent=2))
        return init.description

    # ---- one optimizer step ------------------------------------------------------------------------------------
    def _global_draws(self, shape: tuple[int, ...]) -> dict[str, Tensor]:
        """Random inputs of the loss for the whole global batch: ``t`` or ``labels``, the initial momentum of DSM-mode
        phase-space training, ``noise``, then the Hutchinson probes of the FP-Diffusion regulariser, then (with
        ``training.label_dropout`` > 0) the uniforms of label dropout (key ``label_dropout``, not a loss input).
        Each draw is made only when used and after the others, so adding one leaves the others unchanged."""
        g = torch.Generator().manual_seed(step_seed(self.cfg.seed, self.step, 1))
        t = self.cfg.training
        B = shape[0]
        if t.continuous:
            draws = {"t": training_times(self.cfg, self.model.sde, B, g)}  # Score SDE's or the recipe's
        else:
            draws = {"labels": torch.randint(0, self.model.sde.N, (B,), generator=g)}
        sde = self.model.sde
        if sde.random_initial_state:  # DSM-mode phase space: m_0 ~ N(0, Sigma_0[1:, 1:]) for the global batch too
            draws["momentum"] = sde.initial_state(torch.zeros(shape), generator=g)[:, shape[1]:]
        draws["noise"] = torch.randn(sde.state_shape(shape), generator=g)  # phase space: [x, m] noise
        if t.continuous and (t.fp_alpha or t.fp_beta):  # FP-Diffusion: one Gaussian Hutchinson probe per example
            draws["probes"] = torch.randn(sde.state_shape(shape), generator=g)
        if t.label_dropout > 0:
            draws["label_dropout"] = torch.rand(B, generator=g)
        return draws

    def _preprocess_draws(self, shape: tuple[int, ...]) -> dict[str, Tensor | None]:
        g = torch.Generator().manual_seed(step_seed(self.cfg.seed, self.step, 0))
        d = self.cfg.data
        flips = torch.rand(shape[0], generator=g) if d.random_flip else None
        deq = torch.rand(shape, generator=g) if d.uniform_dequantization else None
        augment = self.augment.draw(shape, g) if self.augment is not None else None  # EDM's augmentation, last
        return {"flip_draws": flips, "dequantization_draws": deq, "augment": augment}

    def _prepare(self, batch: Tensor, draws: dict[str, Tensor | None], augment: bool = True) -> Tensor:
        """A loader batch in the model's range on the device (``augment=False``: no flip, no dequantisation)."""
        if batch.dtype != torch.uint8:  # 2-D toys are already float points
            return batch.to(self.env.device, torch.float32)
        d = self.cfg.data
        x = preprocess(batch, centered=d.centered, uniform_dequantization=augment and d.uniform_dequantization,
                       random_flip=augment and d.random_flip, **draws)
        return x.to(self.env.device)

    def _set_lr(self) -> None:
        """Linear warm-up of the original ``optimization_manager``: ``lr * min(step / warmup, 1)`` (step 0 has 0)."""
        o = self.cfg.optim
        lr = o.lr * min(self.step / o.warmup, 1.0) if o.warmup > 0 else o.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def train_step(self, micro_batches: list[Tensor], conds: list[dict[str, Tensor]] | None = None) -> float:
        """One optimizer step over this rank's micro-batches; returns the loss averaged over ranks. ``conds`` (one dict
        of batch-first tensors per micro-batch, e.g. ``class_labels``) is passed to the model with its rows; its
        ``class_labels`` go through label dropout (``training.label_dropout``, draws of the global batch sliced
        like the other draws)."""
        per_rank = sum(b.shape[0] for b in micro_batches)
        global_shape = (per_rank * self.env.world_size, *micro_batches[0].shape[1:])
        loss_draws, prep_draws = self._global_draws(global_shape), self._preprocess_draws(global_shape)
        drop_draws, augment_draws = loss_draws.pop("label_dropout", None), prep_draws.pop("augment")
        torch.manual_seed(step_seed(self.cfg.seed, self.step, 2 + self.env.rank))  # dropout
        self._set_lr()
        self.optimizer.zero_grad(set_to_none=True)
        offset, total = self.env.rank * per_rank, torch.zeros((), device=self.env.device)
        for i, batch in enumerate(micro_batches):
            sl = slice(offset, offset + batch.shape[0])
            offset += batch.shape[0]
            x = self._prepare(batch, {k: (v[sl] if v is not None else None) for k, v in prep_draws.items()})
            x, augment_cond = augment_rows(self.augment, x, augment_draws, sl)  # ({} with training.augment_p = 0)
            sync = i == len(micro_batches) - 1 or self.env.world_size == 1
            no_sync = contextlib.nullcontext() if sync else self.train_model.net.no_sync()
            with self._compile_errors():
                with no_sync, torch.autocast(self.env.device.type, dtype=self.amp_dtype,
                                                   enabled=self.amp_dtype is not None):
                    draws = {k: v[sl].to(self.env.device) for k, v in loss_draws.items()}
                    cond = None if conds is None else self._training_cond(conds[i], drop_draws, sl)
                    cond = {**(cond or {}), **augment_cond} if augment_cond else cond
                    loss = compute_loss(self.cfg, self.train_model, x, cond=cond, **draws) * (batch.shape[0] / per_rank)
                self.scaler.scale(loss).backward()
            total += loss.detach().float()
        mean_loss = float(self.env.mean(total))
        if not math.isfinite(mean_loss):
            return self._nonfinite(mean_loss)
        self.consecutive_skips = 0
        self.scaler.unscale_(self.optimizer)
        if self.cfg.optim.grad_clip >= 0:
            torch.nn.utils.clip_grad_norm_(self.model.net.parameters(), max_norm=self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.model.net)
        self.step += 1
        return mean_loss

    @contextlib.contextmanager
    def _compile_errors(self):
        """torch.compile's failures (with ``training.compile=true``) as one :class:`CompileError` line."""
        try:
            yield
        except Exception as err:
            if not (self.cfg.training.compile and _compile_failure(err)):
                raise
            lines = [line.strip() for line in str(err).splitlines() if line.strip()][:2]  # "backend=... raised:", why
            raise CompileError(f"training.compile=true: torch.compile failed on {self.env.device} "
                               f"({' '.join(lines) or type(err).__name__}); set training.compile=false to train "
                               "without it") from None

    def _training_cond(self, cond: dict[str, Tensor], drop_draws: Tensor | None, sl: slice) -> dict[str, Tensor]:
        """One micro-batch's conditioning on the device, its ``class_labels`` after label dropout (the global
        batch's uniforms ``drop_draws``, rows ``sl``)."""
        cond = {k: v.to(self.env.device) for k, v in cond.items()}
        if drop_draws is not None and cond.get("class_labels") is not None:
            cond["class_labels"] = apply_label_dropout(cond["class_labels"], self.cfg.training.label_dropout,
                                                       drop_draws[sl])
        return cond

    def _nonfinite(self, value: float) -> float:
        """Skip the step (``training.nonfinite=skip``, fewer than ``training.max_skips`` skipped in a row: a warning
        names it) or stop: set aside the checkpoints whose weights gave non-finite losses and raise
        :class:`NonFiniteLossError` naming the one a resume starts from (:mod:`~scoresde.training.divergence`)."""
        t = self.cfg.training
        if t.nonfinite == "skip" and self.consecutive_skips < t.max_skips:
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            self.consecutive_skips += 1
            if self.env.is_main:
                warnings.warn(f"non-finite training loss {value} at step {self.step}: step skipped "
                              f"({self.consecutive_skips} in a row; training.max_skips={t.max_skips} allowed)",
                              stacklevel=3)
            self.step += 1
            return value
        kept, moved = None, []
        if self.env.is_main:  # the weights of every checkpoint since the first skipped step give this loss
            kept, moved = set_aside_diverged(self.workdir, self.step - self.consecutive_skips)
        self.env.barrier()
        raise NonFiniteLossError(divergence_message(value, self.step, self.consecutive_skips, t.max_skips, kept, moved))

    # ---- evaluation, snapshots, checkpoints -------------------------------------------------------------------
    def ema_model(self) -> ScoreModel:
        """A copy of the score model carrying the EMA weights, in eval mode."""
        model = copy.deepcopy(self.model)
        self.ema.copy_to(model.net)
        return model.eval()

    @torch.no_grad()
    def eval_loss(self, num_batches: int = 4) -> float:
        """Loss of the EMA weights on fixed held-out batches with fixed draws (comparable across steps)."""
        model = self.ema_model()
        bs = min(self.cfg.training.batch_size, len(self.eval_set))
        g = torch.Generator().manual_seed(self.cfg.seed + 17)
        losses = []
        for k in range(num_batches):
            idx = global_batch_indices(k, len(self.eval_set), bs, self.cfg.seed + 17)
            examples = [self.eval_set[int(i)] for i in idx]
            x = self._prepare(torch.stack([e[0] for e in examples]), {"flip_draws": None, "dequantization_draws": None},
                              augment=False)
            labels = torch.tensor([int(e[1]) for e in examples], dtype=torch.int64, device=self.env.device)
            cond = {"class_labels": labels} if self.num_classes else None  # conditional: no label dropout here
            losses.append(compute_loss(self.cfg, model, x, cond=cond, generator=g))
        return float(torch.stack(losses).mean())

    @torch.no_grad()
    def snapshot_samples(self, num: int | None = None) -> Tensor:
        """Samples of the EMA model with the snapshot sampler, in data space (``[0, 1]`` for images); a
        class-conditional model samples the classes ``0, 1, ..., num_classes - 1, 0, 1, ...`` in turn.

        The sampler is ``training.snapshot_sampler`` with its defaults and ``training.snapshot_steps`` steps (by
        default DPM-Solver++(2M), 20 steps: 20 network calls, where the original configs' PC sampler makes 1000 and
        took 105 s at 32x32 on a CPU), or with ``snapshot_sampler = 'sampling'`` the run's ``sampling`` section."""
        model = self.ema_model()
        t = self.cfg.training
        num = num or t.num_snapshot_samples
        shape = (num, *self.data_shape())
        if t.snapshot_sampler == "sampling":
            name, options = self.cfg.sampling.sampler_call()
        else:
            name = t.snapshot_sampler
            options = {"steps": t.snapshot_steps} if SAMPLERS[name].fixed_steps else {}
        g = torch.Generator(self.env.device).manual_seed(self.cfg.seed + 1)
        cond = {"class_labels": torch.arange(num, device=self.env.device) % self.num_classes} if self.num_classes \
            else None
        x = sample(model.sde, model.score, shape, name, generator=g, device=self.env.device, cond=cond, **options)
        return x if len(shape) == 2 else inverse_data_scaler(x, self.cfg.data.centered).clamp(0, 1)

    def data_shape(self) -> tuple[int, ...]:
        """Shape of one data example: ``(2,)`` for the 2-D toys, ``(C, H, W)`` for images."""
        example = self.train_set[0][0]
        return tuple(example.shape)

    def save_snapshot(self) -> Path:
        """Write ``samples/step_<step>.png`` (an image grid, or a scatter plot for 2-D data)."""
        x = self.snapshot_samples().cpu()
        self.last_snapshot = (self.step, x)
        path = self.workdir / "samples" / f"step_{self.step}.png"
        if x.dim() == 2:
            scatter_panels([(path.stem, x)], path)
        else:
            save_image_grid(x, path)
        return path

    def save_checkpoint(self, numbered: bool) -> None:
        """Write ``checkpoint_<step>`` (if ``numbered``) or ``preempt_<step>`` atomically (rank 0 only)."""
        path = None
        if self.env.is_main:
            path = save_training_checkpoint(
                self.workdir, self.step, kind="checkpoint" if numbered else "preempt", net=self.model.net,
                ema_state=self.ema.full_state_dict(self.model.net), optimizer=self.optimizer,
                config=self.cfg.to_dict(),
                trainer_state={**self.ema.trainer_state(), "scaler": self.scaler.state_dict(),
                               "skipped_steps": self.skipped_steps, "consecutive_skips": self.consecutive_skips,
                               "loss_window": list(self._window), "world_size": self.env.world_size})
        self._saved = (self.step, path)
        self.env.barrier()

    # ---- logging ----------------------------------------------------------------------------------------------
    def log(self, scalars: dict[str, float]) -> None:
        """Append scalars to ``metrics.jsonl`` (strict JSON: ``null`` for a non-finite value) and TensorBoard
        (rank 0)."""
        if not self.env.is_main:
            return
        append_metrics(self.workdir / "metrics.jsonl", self.step, scalars)
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # deferred: start-up time (tensorboard is heavy)

            self._writer = SummaryWriter(str(self.workdir / "tb"))
        for key, value in scalars.items():
            self._writer.add_scalar(key, value, self.step)
        self._writer.flush()

    # ---- the loop ---------------------------------------------------------------------------------------------
    def _batches(self):
        t = self.cfg.training
        sampler = StepBatchSampler(len(self.train_set), t.batch_size, self.cfg.seed, self.step, self.env.rank,
                                   self.env.world_size, t.grad_accum, t.n_iters)
        micro, labels = [], []
        pin = self.env.device.type == "cuda"  # page-locked batches: asynchronous host-to-device copies
        for images, y in make_loader(self.train_set, sampler, t.num_workers, pin_memory=pin):
            micro.append(images)
            labels.append(torch.as_tensor(y, dtype=torch.int64))
            if len(micro) == t.grad_accum:
                yield micro, labels
                micro, labels = [], []

    def train(self, max_steps: int | None = None) -> dict[str, float]:
        """Run from the current step to ``training.n_iters`` (or ``max_steps`` more steps); returns last scalars.

        Holds the workdir lock until it returns. On ``SIGTERM``/``SIGINT`` it finishes the current step, writes a
        pre-emption checkpoint at the step reached and raises
        :class:`~scoresde.training.signals.TrainingInterrupted` (a second signal exits at once)."""
        self._acquire_lock()
        try:
            with StopSignals() as signals:
                return self._train_loop(max_steps, signals)
        finally:
            self.release_lock()
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def _train_loop(self, max_steps: int | None, signals: StopSignals) -> dict[str, float]:
        t = self.cfg.training
        if self.env.is_main:
            prepare_workdir(self.workdir, self.cfg)
        self.env.barrier()
        end = t.n_iters if max_steps is None else min(t.n_iters, self.step + max_steps)
        bar = tqdm(total=end, initial=self.step, desc="training", disable=not (self.progress and self.env.is_main))
        last: dict[str, float] = {}
        timed, tic = 0, time.perf_counter()  # steps and start of this process's part of the log window
        self._periodic_s = 0.0
        for micro, labels in self._batches():
            if self.step >= end:
                break
            conds = [{"class_labels": y} for y in labels] if self.num_classes else None
            self._window.append(self.train_step(micro, conds))
            timed += 1
            bar.update(1)
            if self.step % t.log_freq == 0:
                last = self._log_window(timed, tic)
                bar.set_postfix(loss=f"{last['train/loss']:.4f}")
                timed, tic, self._periodic_s = 0, time.perf_counter(), 0.0
            since = time.perf_counter()
            self._periodic()
            self._periodic_s += time.perf_counter() - since
            signum = self._stop_signal(signals)
            if signum is not None and self.step < end:
                bar.close()
                raise TrainingInterrupted(signum, self.step, self._preempt())
        if self._window and timed:  # the steps since the last log line
            last = self._log_window(timed, tic)
        bar.close()
        return last

    def _stop_signal(self, signals: StopSignals) -> int | None:
        """The stop signal received by this rank, or under DDP by any rank (``SIGTERM`` for the others), else
        ``None``: every rank stops at the same step boundary."""
        received = signals.received
        if self.env.world_size > 1:
            anyone = float(self.env.mean(torch.tensor(float(received or 0), device=self.env.device))) > 0
            return (received or int(signal.SIGTERM)) if anyone else None
        return received

    def _preempt(self) -> Path | None:
        """Write a pre-emption checkpoint at the current step unless one was just written; return its path (rank
        0; ``None`` elsewhere)."""
        if self._saved[0] != self.step:
            self.save_checkpoint(numbered=False)
        return self._saved[1]

    def _log_window(self, timed: int, since: float) -> dict[str, float]:
        """Log the mean finite loss of the steps since the last log line (those before a resume included: the
        checkpoint carries them), the number of skipped non-finite steps among them (``train/skipped``, only when
        nonzero), and the steps per second of the last ``timed`` steps: the wall time since ``since`` (data loading
        included) less the evaluation, checkpoint and snapshot time of the window (``_periodic_s``)."""
        training_s = time.perf_counter() - since - self._periodic_s
        finite = [v for v in self._window if math.isfinite(v)]
        scalars = {"train/loss": sum(finite) / len(finite) if finite else math.nan,
                   "train/steps_per_s": timed / training_s,
                   "train/lr": self.optimizer.param_groups[0]["lr"]}
        if len(finite) < len(self._window):
            scalars["train/skipped"] = len(self._window) - len(finite)
        self._window = []
        self.log(scalars)
        return scalars

    def _periodic(self) -> None:
        t = self.cfg.training
        if t.eval_freq and self.step % t.eval_freq == 0 and self.env.is_main and self.eval_set is not None:
            self.log({"eval/loss_ema": self.eval_loss()})
        numbered = self.step % t.snapshot_freq == 0 or self.step == t.n_iters
        if numbered or self.step % t.snapshot_freq_for_preemption == 0:
            self.save_checkpoint(numbered)
        if numbered and t.snapshot_sampling and self.env.is_main:
            self.save_snapshot()

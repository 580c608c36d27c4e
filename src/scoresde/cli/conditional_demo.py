"""The conditional digits demo (``scoresde demo --conditional``): train a class-conditional DDPM++ on the built-in
16×16 digits, then measure controllable generation with the digit classifier of :mod:`.digits_demo`.

* Training: the ``digits/vp_ddpmpp_conditional`` preset (label dropout 0.1, learned null label) through the library's
  :class:`~scoresde.training.Trainer`, the same step count as the unconditional demo; ``OUT/run`` resumes.
* Class-conditional sampling, DPM-Solver++(2M) with 20 steps: classifier-free guidance (Ho & Salimans 2022) at each
  ``w`` of ``cfg_scales``, plain and with each option set of ``cfg_options`` (CFG rescale, dynamic thresholding,
  a noise-level interval: :mod:`scoresde.guidance`), and classifier guidance (the null-label score of the same
  network plus the gradient of a noise-conditional classifier, trained here for ``classifier_steps`` or loaded). For
  each setting (:func:`guidance_quality`): the fraction of samples the logistic-regression digit classifier assigns
  to the requested class, the entropy (bits) of the assigned classes per requested class, the fraction of saturated
  pixels (outside the data range) and the Fréchet distance of the classifier's logits to the test digits of the
  requested class. The grid shows the setting :func:`pick_setting` chooses: the highest requested-class rate among
  the settings whose saturated-pixel fraction and logit Fréchet distance are no worse than ``w = 0``'s, so that
  speckled samples the linear classifier still reads as the requested digit cannot win.
* Inpainting of the bottom half of test digits (top half observed) with Score SDE's replacement method (its own PC
  sampler): how often the completed digit's class agrees with the original's (true label and the classifier's
  reading of the original).
* A spherical interpolation strip between two test digits' probability-flow ODE codes, decoded with the ODE.

Files: ``grid.png`` (10×10, one row per digit, CFG at the picked setting), ``inpainting.png`` (rows: originals,
top halves given, completions), ``interpolation.png`` and ``metrics.json``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data import inverse_data_scaler, load_digits16, preprocess
from ..data.image_grid import save_image_grid
from ..guidance import classifier, classifier_free
from ..inverse import inpaint
from ..sampling import sample
from ..sampling.latent import encode, interpolate
from ..training.classifier import load_classifier
from .classifier_commands import train_classifier
from .digits_demo import digit_classifier, train_or_resume
from .image_files import half_mask

__all__ = ["PRESET", "class_agreement", "cmd_conditional_demo", "digit_logits_by_class", "format_conditional_summary",
           "guidance_quality", "pick_setting", "run_conditional_demo", "sample_digits", "saturated_fraction",
           "setting_name"]

PRESET = "digits/vp_ddpmpp_conditional"
NUM_CLASSES = 10
#: the option sets of classifier-free guidance the demo measures besides plain CFG (benchmarks/RESULTS.md, "Guidance
#: at large scales": these two kept the saturated-pixel fraction at w = 0's level)
DEMO_OPTIONS: tuple[dict[str, Any], ...] = ({"threshold": 99.5}, {"rescale": 0.7, "threshold": 99.5})


def class_agreement(images: Tensor, requested: Tensor, clf: Any, num_classes: int = NUM_CLASSES) -> dict[str, Any]:
    """How well images ``(B, 1, H, W)`` in ``[0, 1]`` match their ``requested`` classes ``(B,)`` under the digit
    classifier ``clf`` (scikit-learn, ``predict_proba`` on flattened pixels): ``fraction`` assigned to the requested
    class, ``entropy_bits_per_class`` (entropy of the assigned classes among the images requested as ``c``, in bits;
    ``None`` for a class not requested) and their mean over the requested classes."""
    predicted = torch.from_numpy(clf.predict_proba(images.flatten(1).numpy()).argmax(1))
    entropies: list[float | None] = []
    for c in range(num_classes):
        got = predicted[requested == c]
        if not len(got):
            entropies.append(None)
            continue
        p = torch.bincount(got, minlength=num_classes).double() / len(got)
        entropies.append(float(sum(-q * math.log2(q) for q in p.tolist() if q > 0)))  # sum from +0: no -0.0
    present = [e for e in entropies if e is not None]
    return {"fraction": float((predicted == requested).double().mean()), "entropy_bits_per_class": entropies,
            "mean_entropy_bits": float(np.mean(present)) if present else float("nan"), "n": len(requested)}


def saturated_fraction(samples: Tensor, margin: float = 0.1) -> float:
    """Fraction of the pixels of ``samples`` (model output in the ``[-1, 1]`` convention, before any clipping) that
    lie outside the data range by more than ``margin`` (``|x| > 1 + margin``): the saturated speckle of over-guided
    samples (clipping them to ``[0, 1]`` leaves isolated black/white pixels). No test digit has any; ``margin = 0.1``
    (5% of the range) leaves room for the sampler's last-step rounding around the background value."""
    return float((samples.abs() > 1.0 + margin).double().mean())


def digit_logits_by_class(clf: Any, num_classes: int = NUM_CLASSES) -> list[np.ndarray]:
    """The digit classifier's logits (``decision_function``, shape ``(n_c, num_classes)``) of the test digits of each
    class: the reference of the per-class logit Fréchet distance."""
    test = load_digits16("test")
    logits = clf.decision_function(test.images.flatten(1).numpy() / 255.0)
    return [logits[(test.labels == c).numpy()] for c in range(num_classes)]


def _gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(0), np.cov(features, rowvar=False)


def guidance_quality(samples: Tensor, requested: Tensor, clf: Any, reference: Sequence[np.ndarray], *,
                     margin: float = 0.1) -> dict[str, Any]:
    """Quality of class-conditional digit samples ``(B, 1, 16, 16)`` in ``[-1, 1]`` (unclipped) for the ``requested``
    classes: :func:`class_agreement` (requested-class rate, class entropy) of the clipped images, the
    :func:`saturated_fraction` and the Fréchet distance (Heusel et al. 2017's formula,
    :func:`scoresde.metrics.distances.frechet_distance`) between Gaussian fits of the digit classifier's logits of the
    samples requested as ``c`` and of the test digits of class ``c`` (``reference``, :func:`digit_logits_by_class`),
    per class and averaged: a speckled digit the classifier still reads as ``c`` has logits far from real ``c``'s."""
    from ..metrics.distances import frechet_distance  # deferred: start-up time of the CLI (scipy.linalg)

    images = inverse_data_scaler(samples, True).clamp(0, 1)
    logits = clf.decision_function(images.flatten(1).numpy())
    per_class = [None if not bool((requested == c).any()) else
                 frechet_distance(*_gaussian(logits[(requested == c).numpy()]), *_gaussian(reference[c]))
                 for c in range(len(reference))]
    present = [d for d in per_class if d is not None]
    return {**class_agreement(images, requested, clf), "saturated_fraction": saturated_fraction(samples, margin),
            "logit_fd": float(np.mean(present)), "logit_fd_per_class": per_class}


def sample_digits(model: Any, labels: Tensor, steps: int, seed: int, batch_size: int) -> tuple[Tensor, int]:
    """DPM-Solver++(2M) samples of ``model`` for ``labels``, unclipped in the model's ``[-1, 1]`` convention (centered
    digits), batch by batch (the same noise for every guidance setting); returns them and the NFE per batch."""
    chunks, nfe = [], 0
    for start in range(0, len(labels), batch_size):
        y = labels[start:start + batch_size]
        g = torch.Generator().manual_seed(seed * 1_000_003 + start)
        x, info = sample(model, (len(y), 1, 16, 16), "dpm_solver", steps=steps, order=2, algorithm="dpmsolver++",
                         method="multistep", generator=g, cond={"class_labels": y}, return_info=True)
        chunks.append(x)
        nfe = info.nfe
    return torch.cat(chunks), nfe


def setting_name(row: dict[str, Any]) -> str:
    """``w=3`` / ``w=3 rescale=0.7 threshold=99.5`` / ``classifier scale=1``: a guidance setting in one phrase."""
    if row["guidance"] != "cfg":
        return f"{row['guidance']} scale={row['scale']:g}"
    return " ".join([f"w={row['scale']:g}", *(f"{k}={v}" for k, v in row.get("options", {}).items())])


def pick_setting(rows: Sequence[dict[str, Any]], *, saturation_slack: float = 0.0,
                 fd_slack: float = 0.0) -> tuple[dict[str, Any], str]:
    """The classifier-free guidance setting of ``rows`` (:func:`guidance_quality` rows with ``guidance``, ``scale``,
    ``options``) with the highest requested-class rate among those whose saturated-pixel fraction is at most
    ``w = 0``'s ``+ saturation_slack`` and whose mean logit Fréchet distance is at most ``w = 0``'s ``* (1 +
    fd_slack)`` (ties: the smaller ``w``, then the fewer options); and the reason, in words. A sample of saturated
    speckle around a digit raises the first two, so it cannot be picked for the class rate it still gets."""
    cfg = [r for r in rows if r["guidance"] == "cfg"]
    base = next((r for r in cfg if r["scale"] == 0.0 and not r.get("options")), None)
    if base is None:
        raise ValueError("pick_setting needs the plain w = 0 setting (the conditional model) as the reference")
    ok = [r for r in cfg if r["saturated_fraction"] <= base["saturated_fraction"] + saturation_slack
          and r["logit_fd"] <= base["logit_fd"] * (1.0 + fd_slack)]
    best = max(ok, key=lambda r: (r["fraction"], -r["scale"], -len(r.get("options", {}))))
    excluded = [setting_name(r) for r in cfg if r not in ok]
    why = (f"picked {setting_name(best)}: the highest requested-class rate ({best['fraction']:.3f}) among the "
           f"{len(ok)} of {len(cfg)} CFG settings whose saturated-pixel fraction (<= {base['saturated_fraction']:.4f}"
           f"{f' + {saturation_slack:g}' if saturation_slack else ''}) and logit Fréchet distance (<= "
           f"{base['logit_fd']:.2f}{f' x {1 + fd_slack:g}' if fd_slack else ''}) are no worse than w = 0's"
           + (f"; excluded: {', '.join(excluded)}" if excluded else ""))
    return best, why


def _load_or_train_classifier(path: str | Path | None, out: Path, steps: int, overrides: Sequence[str],
                              progress: bool) -> tuple[Any, str, float]:
    """A noise-conditional digits classifier (VP, the preset's SDE): loaded from ``path`` or trained in
    ``out/classifier`` for ``steps`` (resumed there). Returns ``(classifier, where, training seconds)``."""
    tic = time.perf_counter()
    if path is None:
        path = out / "classifier"
        train_classifier(PRESET, path, overrides=[f"classifier.steps={steps}", *overrides], progress=progress)
    return load_classifier(path), str(path), time.perf_counter() - tic


def _inpainting(model: Any, clf: Any, num: int, steps: int, seed: int, out: Path) -> dict[str, Any]:
    """Complete the bottom half of ``num`` test digits from their top half (replacement method = PC); the class
    agreement of completions with the originals, and ``inpainting.png`` (10 digits, one per class if present)."""
    test = load_digits16("test")
    x, y = preprocess(test.images[:num]), test.labels[:num].long()
    mask = half_mask("top-half", (1, 16, 16))
    tic = time.perf_counter()
    done, info = inpaint(model, x * 2.0 - 1.0, mask, method="replacement", steps=steps,
                         generator=torch.Generator().manual_seed(seed), return_info=True)
    seconds = time.perf_counter() - tic
    done = inverse_data_scaler(done, True).clamp(0, 1)
    read = lambda images: torch.from_numpy(clf.predict_proba(images.flatten(1).numpy()).argmax(1))  # noqa: E731
    pred_done, pred_orig = read(done), read(x)
    picks = [int((y == c).nonzero()[0]) for c in range(NUM_CLASSES) if bool((y == c).any())]
    shown = x[picks] * mask + 0.5 * (1 - mask)
    save_image_grid(torch.cat([x[picks], shown, done[picks]]), out / "inpainting.png", nrow=len(picks))
    return {"method": "replacement (PC: reverse diffusion + Langevin)", "steps": steps, "n": num, "nfe": info.nfe,
            "observed": "top half", "agreement_with_true_label": float((pred_done == y).double().mean()),
            "agreement_with_classifier_on_original": float((pred_done == pred_orig).double().mean()),
            "classifier_accuracy_on_originals": float((pred_orig == y).double().mean()), "seconds": seconds}


def _interpolation(model: Any, frames: int, tol: float, seed: int, out: Path) -> dict[str, Any]:
    """Encode two test digits of different classes (probability-flow ODE), slerp their codes, decode every frame
    with the ODE (null label: the unconditional model); ``interpolation.png`` and the ends' round-trip error."""
    test = load_digits16("test")
    first = int((test.labels != test.labels[0]).nonzero()[0])
    x = preprocess(test.images[[0, first]], centered=True)
    tic = time.perf_counter()
    code, enc = encode(model, x, rtol=tol, atol=tol, return_info=True)
    path = interpolate(code[:1], code[1:], frames).flatten(0, 1)
    decoded, dec = sample(model, (frames, 1, 16, 16), "ode", x_T=path, rtol=tol, atol=tol, return_info=True,
                          generator=torch.Generator().manual_seed(seed))
    images = inverse_data_scaler(decoded, True).clamp(0, 1)
    save_image_grid(images, out / "interpolation.png", nrow=frames)
    ends = torch.stack([images[0], images[-1]])
    return {"frames": frames, "classes": [int(test.labels[0]), int(test.labels[first])], "rtol": tol, "atol": tol,
            "encode_nfe": enc.nfe, "decode_nfe": dec.nfe, "seconds": time.perf_counter() - tic,
            "round_trip_max_abs_error_pixels": float((ends - inverse_data_scaler(x, True)).abs().max())}


def _logged_loss(run: Path) -> float | None:
    """The last ``train/loss`` of a run's ``metrics.jsonl`` (a resumed run that trains no further step logs none)."""
    path = run / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    return losses[-1] if losses else None


def run_conditional_demo(out_dir: str | Path, *, overrides: Sequence[str] = (),
                         classifier_path: str | Path | None = None, classifier_steps: int = 300,
                         classifier_overrides: Sequence[str] = (), per_class: int = 20,
                         sampler_steps: int = 20, cfg_scales: Sequence[float] = (0.0, 1.0, 3.0),
                         cfg_options: Sequence[dict[str, Any]] = DEMO_OPTIONS,
                         classifier_scales: Sequence[float] = (1.0, 3.0), num_inpaint: int = 50,
                         inpaint_steps: int = 50, frames: int = 10, ode_tol: float = 1e-4, batch_size: int = 100,
                         progress: bool = True) -> dict[str, Any]:
    """Train (or resume) ``digits/vp_ddpmpp_conditional`` in ``out_dir/run`` and write ``grid.png``,
    ``inpainting.png``, ``interpolation.png`` and ``metrics.json`` (module docstring); returns the metrics.

    Args:
        overrides: run-config overrides (``training.n_iters=...``, ``seed=...``, network size for tests).
        classifier_path: a ``scoresde train-classifier`` folder for the preset's SDE; ``None``: train one in
            ``out_dir/classifier`` for ``classifier_steps`` (with ``classifier_overrides``, ``classifier.KEY=VALUE``).
        per_class: samples per requested digit and guidance setting.
        sampler_steps: DPM-Solver++(2M) steps (20: the fast setting; NFE doubles under CFG with ``w != 0``).
        cfg_scales: Ho & Salimans' ``w`` values measured plain (the grid uses the :func:`pick_setting` choice).
        cfg_options: option sets of :func:`scoresde.guidance.classifier_free` (``rescale``, ``threshold``,
            ``interval``) measured at every ``w > 0`` of ``cfg_scales`` besides the plain one.
        classifier_scales: classifier-guidance scales measured (``1``: Bayes' rule).
        num_inpaint, inpaint_steps: test digits completed and PC steps of the replacement method.
        frames, ode_tol: interpolation frames and the ODE tolerance (rtol = atol) of encoding and decoding.
        batch_size: samples per sampler call.
    """
    out = Path(out_dir)
    cfg, trainer, last, train_s = train_or_resume(PRESET, overrides, out / "run", progress)
    model = trainer.ema_model()
    clf, accuracy = digit_classifier(cfg.seed)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    reference = digit_logits_by_class(clf)
    settings, grids = [], []
    runs = [(w, {}) for w in cfg_scales] + [(w, dict(o)) for o in cfg_options for w in cfg_scales if w != 0 and o]
    for w, options in runs:
        tic = time.perf_counter()
        raw, nfe = sample_digits(classifier_free(model, w, **options), labels, sampler_steps, cfg.seed, batch_size)
        settings.append({"guidance": "cfg", "scale": w, "options": options, "nfe": nfe,
                         "seconds": time.perf_counter() - tic, **guidance_quality(raw, labels, clf, reference)})
        grids.append(inverse_data_scaler(raw, True).clamp(0, 1))
    noisy, where, clf_train_s = _load_or_train_classifier(classifier_path, out, classifier_steps,
                                                          classifier_overrides, progress)
    for s in classifier_scales:
        tic = time.perf_counter()
        guided = classifier(model, noisy, s, pass_labels=False)  # the null-label (unconditional) score + classifier
        raw, nfe = sample_digits(guided, labels, sampler_steps, cfg.seed, batch_size)
        settings.append({"guidance": "classifier", "scale": s, "nfe": nfe, "seconds": time.perf_counter() - tic,
                         **guidance_quality(raw, labels, clf, reference)})
    best, why = pick_setting(settings)
    keep = torch.arange(len(labels)) % per_class < min(per_class, NUM_CLASSES)
    grid = save_image_grid(grids[settings.index(best)][keep], out / "grid.png", nrow=min(per_class, NUM_CLASSES))
    metrics = {
        "preset": PRESET, "overrides": list(overrides), "steps": trainer.step, "train_seconds_this_run": train_s,
        "final_train_loss": last.get("train/loss", _logged_loss(out / "run")),
        "digit_classifier_test_accuracy": accuracy,
        "sampler": f"dpm_solver (DPM-Solver++(2M), {sampler_steps} steps)", "per_class": per_class,
        "guidance": settings, "best_cfg_scale": best["scale"], "best_cfg_options": best["options"],
        "best_cfg_fraction": best["fraction"], "best_cfg_reason": why,
        "best_fraction": max(r["fraction"] for r in settings),
        "noise_conditional_classifier": {"path": where, "step": getattr(noisy, "step", None),
                                         "seconds": clf_train_s},
        "inpainting": _inpainting(model, clf, num_inpaint, inpaint_steps, cfg.seed, out),
        "interpolation": _interpolation(model, frames, ode_tol, cfg.seed, out),
        "files": {"grid": str(grid), "inpainting": str(out / "inpainting.png"),
                  "interpolation": str(out / "interpolation.png"), "metrics": str(out / "metrics.json"),
                  "run": str(out / "run")},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def format_conditional_summary(m: dict[str, Any]) -> str:
    """A short report of :func:`run_conditional_demo`'s metrics."""
    loss = "n/a" if m["final_train_loss"] is None else f"{m['final_train_loss']:.4f}"
    lines = [f"trained {m['preset']} to step {m['steps']} ({m['train_seconds_this_run']:.0f}s in this run), final "
             f"loss {loss}; digit classifier test accuracy "
             f"{m['digit_classifier_test_accuracy']:.3f}", f"class-conditional samples ({m['sampler']}, "
             f"{m['per_class']} per digit): fraction assigned to the requested digit, mean class entropy"]
    lines[-1] += ", saturated-pixel fraction, logit Fréchet distance to the requested digit's test digits"
    for r in m["guidance"]:
        lines.append(f"  {setting_name(r):<40} {r['fraction']:.3f}  {r['mean_entropy_bits']:.2f} bits  "
                     f"{r['saturated_fraction']:.4f}  {r['logit_fd']:7.2f}  (NFE {r['nfe']}, {r['seconds']:.0f}s)")
    lines.append(f"grid.png: {m['best_cfg_reason']}")
    ip, it = m["inpainting"], m["interpolation"]
    lines += [f"inpainting (bottom half from the top, {ip['n']} test digits): class agreement with the original "
              f"{ip['agreement_with_true_label']:.3f} (true label), {ip['agreement_with_classifier_on_original']:.3f}"
              f" (classifier on the original)",
              f"interpolation: {it['frames']} frames between digits {it['classes']} (encode NFE {it['encode_nfe']}, "
              f"decode NFE {it['decode_nfe']})",
              f"wrote {m['files']['grid']}, {m['files']['inpainting']}, {m['files']['interpolation']} and "
              f"{m['files']['metrics']}"]
    return "\n".join(lines)


def cmd_conditional_demo(args: Any) -> int:
    """``scoresde demo --conditional``: :func:`run_conditional_demo` with ``--steps`` (training steps), ``--seed``,
    ``--num-samples`` (samples per digit and setting) and ``--classifier``; prints the summary."""
    if args.toy:
        raise ValueError("--toy and --conditional are two different demos; pick one")
    overrides = [f"seed={args.seed}"] + ([f"training.n_iters={args.steps}"] if args.steps else [])
    metrics = run_conditional_demo(args.out, overrides=overrides, classifier_path=args.classifier,
                                   per_class=args.num_samples or 20, progress=not args.quiet)
    print(format_conditional_summary(metrics))
    return 0

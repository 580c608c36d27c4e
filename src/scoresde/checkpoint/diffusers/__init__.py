"""Hugging Face ``diffusers`` folders: load a ``UNet2DModel`` (+ scheduler) as a scoresde model, export ours as one.

Two ``UNet2DModel`` families correspond to scoresde networks, and only their weights are renamed (nothing is
re-trained or approximated):

* **DDPM** (Ho et al. 2020; ``google/ddpm-*``): ``DownBlock2D``/``AttnDownBlock2D`` and ``UpBlock2D``/
  ``AttnUpBlock2D`` blocks, positional time embedding -> :class:`~scoresde.nets.DDPM` with
  ``decoder_attn_per_block=True`` (diffusers' ``AttnUpBlock2D`` attends after every decoder block, as Ho et al.'s
  TensorFlow code does; Score SDE's port attends once per resolution).
* **NCSN++** (Song et al. 2021; ``google/ncsnpp-*``): ``SkipDownBlock2D``/``AttnSkipDownBlock2D`` and
  ``SkipUpBlock2D``/``AttnSkipUpBlock2D`` blocks (BigGAN residual blocks with FIR resampling, the input and output
  image pyramids) -> :class:`~scoresde.nets.NCSNpp` with ``progressive='output_skip'``,
  ``progressive_input='input_skip'``, ``fir=True``; Fourier (noise-level) or positional (timestep) embedding.

The scheduler config fixes the SDE and the conventions of :class:`~scoresde.models.ScoreModel`:

* ``DDPMScheduler``, ``DDIMScheduler``, ``DPMSolverMultistepScheduler``, ... with ``beta_schedule='linear'`` and
  ``prediction_type='epsilon'``: the discrete DDPM chain of ``N = num_train_timesteps`` steps,
  :class:`~scoresde.sdes.DiscreteVPSDE` ``(beta_min = N beta_start, beta_max = N beta_end, N)`` with
  ``training.continuous=False`` (``training.sde = 'discrete_vpsde'``): the network sees the timestep ``t (N - 1)``
  and predicts the noise; the SDE's DDPM tables equal the scheduler's betas and ``alphas_cumprod``, and its noise
  schedule (``alpha``, ``sigma``, ``lambda_t``, which every sampler reads) interpolates ``alphas_cumprod`` between the
  timesteps' times ``k / (N - 1)``, so DDIM and DPM-Solver step on the table the network was trained on, as
  diffusers' schedulers do. ``continuous=True`` (``N = 1000``) reads it as a continuous ``VPSDE`` fed ``999 t``
  instead (Score SDE's reading of DDPM checkpoints, whose ``alpha(t)`` is not the table);
* ``ScoreSdeVeScheduler``: ``VESDE(sigma_min, sigma_max, N)``, continuous, the network sees ``sigma(t)`` and
  outputs the score;
* ``ScoreSdeVpScheduler``: ``VPSDE(beta_min, beta_max, N)``, continuous, the network sees ``999 t`` and predicts
  the noise (Score SDE's convention).

A bare model folder (``config.json`` and weights, no scheduler) needs ``sde=``. Weights are read from
``diffusion_pytorch_model.safetensors`` (with ``safetensors``) or ``diffusion_pytorch_model.bin`` (with
``torch.load(weights_only=True)``): nothing in a folder is executed, and the ``diffusers`` package is not needed
(the tests use it as the reference). The loaded model carries a scoresde config (``model.config``), so it can be
imported into a run folder and fine-tuned (``scoresde import --format diffusers``).

Sampling with diffusers' timesteps: :func:`timestep_times` turns a scheduler's integer ``timesteps`` into the
forward times of the loaded discrete model (``t = k / (N - 1)``), for ``scoresde.sample(..., times=...)``.

The modules, lowest first: :mod:`.folder` (reading and writing the folder: JSON configs, weight files),
:mod:`.translate` (``UNet2DModel``/scheduler configs <-> scoresde config sections, both ways, and
:func:`timestep_times`), :mod:`.keymap` (diffusers keys <-> ours, the tensor transforms), :mod:`.load`
(:func:`load_diffusers`) and :mod:`.export` (:func:`export_diffusers`).
"""

from .export import export_diffusers
from .folder import SUPPORTED_UNET_CLASSES, is_diffusers_folder, read_diffusers_folder
from .keymap import diffusers_key_map
from .load import diffusers_network_state, load_diffusers
from .translate import DDPM_SCHEDULERS, diffusers_config, timestep_times

__all__ = [
    "DDPM_SCHEDULERS",
    "SUPPORTED_UNET_CLASSES",
    "diffusers_config",
    "diffusers_key_map",
    "diffusers_network_state",
    "export_diffusers",
    "is_diffusers_folder",
    "load_diffusers",
    "read_diffusers_folder",
    "timestep_times",
]

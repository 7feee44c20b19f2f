"""The networks: context models (multistage, serial, shared), the bundled hyperprior, entropy likelihoods.

=========================  ==================================================
``MultistageContextModel``  the paper's model: a masked conv per patch position
``AnyOrderContextModel``    one multistage model for every schedule of a patch (a mask per example)
``StackedContextModels``    K multistage models trained as one (grouped convolutions: the GPU's layout)
``PackedContextModels``     K multistage models trained as one, decoded offsets only (the CPU's layout)
``SerialContextModel``      the serial raster autoregressive baseline
``SharedScorer``            one order-agnostic model for any context set
``BaseCodec``               the bundled scale hyperprior (images <-> latents)
``JointModel``              base codec + context model as one module (fine-tuning the codec)
``builtin``                 the built-in latent set (photos through BaseCodec)
``load_context_model``      a trained multistage model from its self-describing weights file (``ContextWeights``)
=========================  ==================================================
"""

from .any_order import AnyOrderContextModel
from .builtin import builtin, builtin_info
from .context_weights import ContextWeights, load_context_model, load_weights, save_weights, weights_file
from .entropy import SCALE_BOUND, FactorizedPrior, bits, gaussian_likelihood, gaussian_mixture_likelihood
from .hyperprior import STRIDE, BaseCodec, BaseCodecConfig, images_to_latents, pad
from .joint import SERIAL, JointModel, context_model
from .multistage import ModelConfig, MultistageContextModel, fitted_state, prior_is_scale, translated_state
from .packed import PackedContextModels
from .serial import SerialContextModel, causal_mask
from .shared import SharedScorer
from .stacked import StackedContextModels

__all__ = [
    "AnyOrderContextModel",
    "BaseCodec",
    "BaseCodecConfig",
    "ContextWeights",
    "FactorizedPrior",
    "JointModel",
    "ModelConfig",
    "MultistageContextModel",
    "PackedContextModels",
    "SCALE_BOUND",
    "SERIAL",
    "STRIDE",
    "SerialContextModel",
    "SharedScorer",
    "StackedContextModels",
    "bits",
    "builtin",
    "builtin_info",
    "causal_mask",
    "context_model",
    "fitted_state",
    "gaussian_likelihood",
    "gaussian_mixture_likelihood",
    "images_to_latents",
    "load_context_model",
    "load_weights",
    "pad",
    "prior_is_scale",
    "save_weights",
    "translated_state",
    "weights_file",
]

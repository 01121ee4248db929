"""deepfake_exp: a Hydra-configured experiment pipeline for deepfake face detection."""

from deepfake_exp.utils.data_config import register_resolvers

__version__ = "0.1.0"

# Model configs write ``mean: ${model_data:mean}``; any process that imports the package can
# resolve them (stored run configs included).
register_resolvers()

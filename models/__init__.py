"""Plain ``nn.Module`` models, registered by name."""

from models.classifier import MLP, ModelSpec, build_model, register_model

__all__ = ["MLP", "ModelSpec", "build_model", "register_model"]

"""The shared representation: a bimodal autoencoder over face and voice embeddings (model) and its training
(train). See docs/shared_representation.md."""
from .model import BimodalAutoencoder, ModelSpec, from_bytes, load
from .train import TrainingData, TrainReport, person_prototypes, train_model

__all__ = ["BimodalAutoencoder", "ModelSpec", "from_bytes", "load", "TrainingData", "TrainReport",
           "person_prototypes", "train_model"]

"""gluon_bertft: BERT fine-tuning on MXNet Gluon, as in Dive into Deep Learning §16.6-16.7."""
from . import threads

threads.configure()  # before the first ``import mxnet``: MXNet reads its thread count then
from .data.snli import SNLIBERTDataset, read_snli
from .heads import BERTClassifier, predict_snli
from .model import BERTEncoder, BERTModel
from .pretrained import PRESETS, load_pretrained_model, save_pretrained
from .train import evaluate_accuracy, train

__all__ = ['BERTClassifier', 'BERTEncoder', 'BERTModel', 'PRESETS', 'SNLIBERTDataset',
           'evaluate_accuracy', 'load_pretrained_model', 'predict_snli', 'read_snli',
           'save_pretrained', 'train']
__version__ = '0.1.0'

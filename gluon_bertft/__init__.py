"""gluon_bertft: BERT fine-tuning on MXNet Gluon, as in Dive into Deep Learning §16.6-16.7."""
from . import threads

threads.configure()  # before the first ``import mxnet``: MXNet reads its thread count then
threads.configure_spin()  # and libgomp its spin count
from .config import FinetuneConfig, PretrainConfig
from .data.snli import SNLIBERTDataset, read_snli
from .errors import ConfigError, DataError, PretrainedError
from .finetune import finetune, finetune_snli
from .heads import BERTClassifier, BERTRegressor, BERTSpanQA, BERTTagger
from .model import BERTEncoder, BERTModel
from .predict import load_model, predict_snli
from .pretrained import PRESETS, load_pretrained_model, save_pretrained
from .tasks import TASKS, make_task
from .train import evaluate_accuracy, train

__all__ = ['BERTClassifier', 'BERTEncoder', 'BERTModel', 'BERTRegressor', 'BERTSpanQA',
           'BERTTagger', 'ConfigError', 'DataError', 'FinetuneConfig', 'PRESETS',
           'PretrainConfig', 'PretrainedError', 'SNLIBERTDataset', 'TASKS', 'evaluate_accuracy',
           'finetune', 'finetune_snli', 'load_model', 'load_pretrained_model', 'make_task',
           'predict_snli', 'read_snli', 'save_pretrained', 'train']
__version__ = '0.2.0'

"""gluon_bertft: BERT fine-tuning on MXNet Gluon, as in Dive into Deep Learning §16.6-16.7."""
import sys as _sys

from .common import threads

threads.configure()  # before the first ``import mxnet``: MXNet reads its thread count then
threads.configure_spin()  # and libgomp its spin count
from .config import FinetuneConfig, PretrainConfig
from .data.snli import SNLIBERTDataset, read_snli
from .common.errors import ConfigError, DataError, PretrainedError
from .finetune import finetune, finetune_snli
from .models.heads import BERTClassifier, BERTRegressor, BERTSpanQA, BERTTagger
from .models.bert import BERTEncoder, BERTModel
from .inference.predict import load_model, predict_snli
from .models.build import PRESETS
from .models.pretrained import load_pretrained_model, save_pretrained
from .tasks import TASKS, make_task
from .training import optimizer as _optimizer
from .training.evaluate import evaluate_accuracy
from .training.loop import train

# checkpoints written before 0.3 pickle their optimizer as gluon_bertft.optimizer.FusedAdam
# (trainer.states): that path must keep resolving for them to resume
_sys.modules.setdefault(__name__ + '.optimizer', _optimizer)

__all__ = ['BERTClassifier', 'BERTEncoder', 'BERTModel', 'BERTRegressor', 'BERTSpanQA',
           'BERTTagger', 'ConfigError', 'DataError', 'FinetuneConfig', 'PRESETS',
           'PretrainConfig', 'PretrainedError', 'SNLIBERTDataset', 'TASKS', 'evaluate_accuracy',
           'finetune', 'finetune_snli', 'load_model', 'load_pretrained_model', 'make_task',
           'predict_snli', 'read_snli', 'save_pretrained', 'train']
__version__ = '0.2.0'

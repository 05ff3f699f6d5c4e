"""The networks and their files: the book's BERT (:mod:`.bert`), the task layers
(:mod:`.heads`), architectures (:mod:`.build`), the book's pretrained format and downloads
(:mod:`.pretrained`), Hugging Face folders (:mod:`.hf`) and the hub (:mod:`.hub`)."""

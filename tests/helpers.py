"""What the test files share besides fixtures (those are in conftest.py)."""

# Test models by name (prvr_cli/features/tiny.py): random weights, nothing downloaded.
TINY_CLIP = ("--clip-model", "prvr-tiny-clip")  # --visual clip and --text clip
TINY_MODELS = (*TINY_CLIP, "--text-model", "prvr-tiny-roberta")  # and --text roberta
TINY_SPEC = {"clip_model": "prvr-tiny-clip", "text_model": "prvr-tiny-roberta"}  # the same, as ExtractSpec keywords

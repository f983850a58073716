"""PII detection for chat turns (Chinese and English), built on presidio-analyzer.

``pipeline.pii.analyzer.PiiAnalyzer`` is the entry point; ``pipeline.pii.recognizers``
holds the team's recognizers.  Importing this package is cheap: presidio (which pulls
in torch/transformers, ~4 s) is imported only by those two modules.
"""
import os

# tldextract (used by presidio's e-mail recognizer) fetches the public-suffix list over
# the network unless this is set before it is imported; the bundled snapshot is used.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

"""Tool pre-selection: forward only the tools a request is likely to call.

text.py: what a tool definition is to the scorer (its name, its words, the text that is
embedded) and its digest. lexical.py: BM25 over a catalog's tool words. cache.py: the bounded
LRU every cache here uses. scoring.py: `ToolScorer`, each tool's relevance to a request (the
router's one query embedding against cached tool embeddings, plus BM25), which the signals read
before the decision (`has_tools`, `signals.tools`). keep.py: which tools survive (top-k, minimum
score, tool_choice, always-keep, tools already called). stage.py: `ToolStage`, the pipeline
stage that rewrites `tools` and sets `x-semrouter-tools`.
"""

from semrouter.tools.keep import Keeping, kept_indices
from semrouter.tools.scoring import ToolScorer
from semrouter.tools.stage import TOOLS_HEADER, ToolStage

__all__ = ["TOOLS_HEADER", "Keeping", "ToolScorer", "ToolStage", "kept_indices"]

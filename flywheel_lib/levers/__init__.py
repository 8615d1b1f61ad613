"""The second seed's levers 1 and 4, and arena battles across cycles.

- :mod:`.store` — lever 1: the timestamped example store and K-nearest few-shot retrieval;
- :mod:`.pairs` — lever 4's data: preference pairs from judged traffic, OpenAI preference JSONL and HF exports;
- :mod:`.dpo` — lever 4's training: DPO of a LoRA adapter on top of the curated SFT adapter;
- :mod:`.arena` — pairwise judges (offline and LLM) shown both orders, ties and position bias;
- :mod:`.ratings` — Bradley-Terry / Elo with bootstrap intervals (choix);
- :mod:`.lineage` — ratings and store growth across the cycles of a lineage.
"""

from .across_cycles import arena_across_cycles, elo_verdict, store_across_cycles
from .arena import PAIRWISE_PROMPT, LLMPairwiseJudge, OfflinePairwiseJudge, judge_battles, parse_pairwise, position_bias
from .pairs import PAIR_COLUMNS, build_preference_pairs, dpo_pairs, known_queries, to_hf_folder, to_openai_jsonl
from .ratings import BradleyTerry
from .store import STORE_COLUMNS, ExampleRetriever, append_examples, fewshot_prompts, store_growth

__all__ = ["PAIRWISE_PROMPT", "LLMPairwiseJudge", "OfflinePairwiseJudge", "judge_battles", "parse_pairwise",
           "position_bias", "arena_across_cycles", "elo_verdict", "store_across_cycles", "PAIR_COLUMNS",
           "build_preference_pairs", "dpo_pairs", "known_queries", "to_hf_folder", "to_openai_jsonl", "BradleyTerry",
           "STORE_COLUMNS", "ExampleRetriever", "append_examples", "fewshot_prompts", "store_growth"]

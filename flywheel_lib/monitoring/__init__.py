"""Monitoring: the failure modes that quietly poison a flywheel, measured every cycle.

- :mod:`.validators` — input validators (topic, length, language, personal data, injection, anomaly) and routing;
- :mod:`.feedback` — explicit feedback vs implicit signals vs the truth: survivorship and latency bias;
- :mod:`.probes` — judge bias probes (anchoring / sycophancy);
- :mod:`.drift` — each judge's kappa per cycle and the drift alarm.
"""

from .validators import ROUTINGS, VALIDATORS, ValidatorConfig, detect_language, route, run_validators, score_validators

__all__ = ["VALIDATORS", "ROUTINGS", "ValidatorConfig", "run_validators", "route", "score_validators",
           "detect_language"]

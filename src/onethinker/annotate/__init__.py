"""The chain-of-thought data engine (``onethinker annotate``): ask an OpenAI-compatible server for responses
to RL records without an SFT record, keep the best one the rewards accept, write release-layout SFT files.

:mod:`.config` (params), :mod:`.client` (HTTP, retries, budget, cache), :mod:`.core` (pure parts),
:mod:`.hooks` (the prompt builder and reward it uses), :mod:`.stage` (the stage).
"""

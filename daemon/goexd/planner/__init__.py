"""The LLM planner: natural-language prompts become actions (and inverses) on the session's resources.

It sits above the resources and below the engine (tests/unit/test_layers.py): the engine (engine/prompts.py) asks
it for a plan, then submits what it planned through the same path as any action (policy, reversibility test,
journal). docs/architecture.md, "Planner".
"""

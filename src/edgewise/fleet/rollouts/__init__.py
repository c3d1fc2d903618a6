"""Getting bundles onto devices: the deployable bundles, selectors, strategies, the rollout engine
(batches, halt, rollback) and the quality gate with its shadow results."""

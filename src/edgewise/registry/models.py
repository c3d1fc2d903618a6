"""The model registry view over a store: versions per model name, stages, lineage and metrics.

Stores keep bundles and aliases; this module answers the questions people ask of a registry:
which versions of `detector` exist, which one is in `production`, where did it come from (parent,
recipe, dataset digest) and how good is it (accuracy, size, latency).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgewise.core.manifest import Lineage, Manifest, Metrics
from edgewise.registry.store import Published, Store, check_alias

STAGES = ("staging", "production")


@dataclass(frozen=True)
class ModelVersion:
    """One published version with what the registry knows about it."""

    published: Published
    task: str
    target: str
    precision: str
    variants: list[str]
    metrics: Metrics
    lineage: Lineage
    aliases: list[str] = field(default_factory=list)

    @classmethod
    def from_manifest(cls, published: Published, manifest: Manifest, aliases: list[str]) -> ModelVersion:
        return cls(
            published=published,
            task=manifest.task,
            target=manifest.target,
            precision=manifest.precision,
            variants=[f"{v.name} ({v.precision}, {'/'.join(v.target_families)})" for v in manifest.variants],
            metrics=manifest.metrics,
            lineage=manifest.lineage,
            aliases=sorted(aliases),
        )


class ModelRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store

    def names(self) -> list[str]:
        return sorted({p.name for p in self.store.list()})

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of `name`, oldest first, with its aliases, metrics and lineage."""
        aliases_by_version: dict[str, list[str]] = {}
        for alias, version in self.store.aliases(name).items():
            aliases_by_version.setdefault(version, []).append(alias)
        return [
            ModelVersion.from_manifest(p, self.store.manifest(p.ref), aliases_by_version.get(p.version, []))
            for p in self.store.list(name)
        ]

    def show(self, ref: str) -> ModelVersion:
        published = self.store.resolve(ref)
        aliases = [a for a, v in self.store.aliases(published.name).items() if v == published.version]
        return ModelVersion.from_manifest(published, self.store.manifest(published.ref), aliases)

    def promote(self, ref: str, stage: str = "production") -> Published:
        """Point `name:stage` at the version `ref` names (a version, another alias, or a digest)."""
        check_alias(stage)
        published = self.store.resolve(ref)
        self.store.set_alias(published.name, stage, published.version)
        return published

    def lineage_chain(self, ref: str, limit: int = 20) -> list[str]:
        """`ref`, its parent, the parent's parent... as far as the store holds them."""
        chain = [self.store.resolve(ref).ref]
        parent = self.store.manifest(chain[0]).lineage.parent
        while parent and len(chain) < limit:
            chain.append(parent)
            try:
                parent = self.store.manifest(parent).lineage.parent
            except Exception:  # parent outside this store (a file path, a hub model): the chain ends
                break
        return chain

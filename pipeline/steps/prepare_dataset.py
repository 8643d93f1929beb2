"""``PrepareDataset``: all of ``poet prepare`` as one composite transform.

Its ``expand`` reads like the job: read the files, apply the data-quality
rules, prepare the pairs, write the shards and the dead letters, compute the
length statistics, write the card.
The launcher (:mod:`pipeline.launch.prepare`) checks everything that can be
checked up front and runs it into a staging folder.
"""

from __future__ import annotations

import apache_beam as beam

from poet.pipeline.launch.inputs import EvalPlan, InputPlan
from poet.pipeline.steps.dead_letters import WriteDeadLetters
from poet.pipeline.steps.length_stats import ComputeLengthStats
from poet.pipeline.steps.metadata import WriteDatasetMetadata
from poet.pipeline.steps.prepare_pairs import PreparePairs
from poet.pipeline.steps.quality import CountContaminated, DataQuality
from poet.pipeline.steps.read import ReadPreferenceFiles
from poet.pipeline.steps.tokenizer_source import TokenizerSource
from poet.pipeline.steps.write_shards import WriteShards
from poet.transforms.contract import PrepareOptions, RunDescription
from poet.transforms.progress import ProgressSettings
from poet.transforms.schema import preference_features


class PrepareDataset(beam.PTransform):
    """All of ``poet prepare`` as one composite transform writing into ``folder``."""

    def __init__(self, options: PrepareOptions, plan: InputPlan, reads: list[tuple], tokenizer: TokenizerSource,
                 folder: str, run: RunDescription, progress: ProgressSettings, evals: EvalPlan | None = None,
                 spread: bool = True):
        super().__init__()
        self.options, self.plan, self.tokenizer, self.folder, self.run = options, plan, tokenizer, folder, run
        self.reads = reads  # the files, or parts of them (see pipeline.launch.inputs.read_parts)
        self.progress = progress
        self.evals = evals  # the --decontaminate files
        self.spread = spread  # spread rows over workers; pointless for one in-process worker (see run_in_process)

    def expand(self, pbegin):
        options = self.options
        features = preference_features(conversational=self.plan.conversational, include_text=options.include_text,
                                       reference=options.reference is not None)
        # rows travel in lists (one per tokenizer batch) wherever they are shuffled: see ReadPreferenceFiles
        chunk_rows = options.batch_size * PreparePairs.BATCHES_PER_CHUNK
        set_aside = ()
        if options.quality:
            chunks, quality_dead = pbegin | "ReadWithDataQuality" >> DataQuality(
                options, self.plan.conversational, self.evals.files if self.evals else [], self.progress,
                self.reads, chunk_rows, self.spread)
            set_aside = (quality_dead,)
        else:
            chunks = pbegin | "ReadFiles" >> ReadPreferenceFiles(self.reads, self.progress, chunk_rows,
                                                                 spread=self.spread, max_row_bytes=options.max_row_bytes)
        row_lists, dead_letters = chunks | "PreparePairs" >> PreparePairs(
            self.tokenizer, options, self.plan.conversational, self.progress)
        if set_aside:
            dead_letters = (dead_letters, *set_aside) | "AllDeadLetters" >> beam.Flatten()
        reference_stats = ()
        if options.reference is not None:
            from poet.pipeline.steps.reference import ScoreReference  # Beam's RunInference imports torch: only here

            row_lists, scores = row_lists | "ScoreReference" >> ScoreReference(options.reference, options.ref_model_copies)
            reference_stats = (scores,)
        shards = row_lists | "WriteShards" >> WriteShards(
            self.folder, options.splits, features.arrow_schema, options.num_shards, options.max_shard_bytes
        )
        dead_letter_files = dead_letters | "WriteDeadLetters" >> WriteDeadLetters(self.folder)
        stats = (row_lists, dead_letters) | "LengthStats" >> ComputeLengthStats()
        contamination = ()
        if self.evals is not None:
            contamination = (dead_letters | "ContaminatedPerSource" >> CountContaminated(),)
        parts = (stats, shards, dead_letter_files, *reference_stats, *contamination)
        return parts | "WriteMetadata" >> WriteDatasetMetadata(
            self.folder, options.splits, self.run, features, repo_id=options.push_to_hub, reference=options.reference,
            evals=self.evals,
        )

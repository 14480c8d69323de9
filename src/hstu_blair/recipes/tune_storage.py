"""Optuna's database storage, with one gap in its heartbeat closed.

Optuna fails a ``RUNNING`` trial whose heartbeat has been silent for the grace period, but only if
the trial ever beat: a process killed between asking for a trial and its heartbeat thread's first
beat leaves a trial with no heartbeat at all, which Optuna never fails, so the study would hold a
``RUNNING`` trial forever and never retry its settings. A live trial beats as soon as it is asked
for, so one that has been silent since it started, for longer than the grace period, is dead too.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import optuna
import sqlalchemy
from optuna.trial import TrialState

# the table Optuna's RDB storage keeps heartbeats in (one row per trial that ever beat)
HEARTBEAT_TABLE = "trial_heartbeats"


class HeartbeatStorage(optuna.storages.RDBStorage):
    """:class:`optuna.storages.RDBStorage` whose stale trials include those that never beat."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        grace = self.grace_period if self.grace_period is not None else 2 * (self.heartbeat_interval or 0)
        started_before = datetime.now() - timedelta(seconds=grace)  # trials' start times are local
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        old = [
            t._trial_id for t in running if t.datetime_start is not None and t.datetime_start < started_before
        ]
        if not old:
            return stale
        query = sqlalchemy.text(f"SELECT trial_id FROM {HEARTBEAT_TABLE} WHERE trial_id IN :ids").bindparams(
            sqlalchemy.bindparam("ids", expanding=True)
        )
        with self.engine.connect() as connection:
            beating = {row[0] for row in connection.execute(query, {"ids": old})}
        return stale + [i for i in old if i not in beating]  # a stale trial has beaten: not in both

"""Stage: a run directory and its single owner (between training and serving).

- :mod:`.layout`: every file name and path of a run directory (the only module that types them);
- :mod:`.model_files`: ``model.json`` and the weights, and loading a trained model from them;
- :mod:`.model_check`: the checks of those files before anything is allocated;
- :mod:`.versions`: model versions (publish, swap pointer, rollback, prune, the writer lock);
- :mod:`.store` / :mod:`.store_schema`: the run's store (items added at run time, users' events);
  :mod:`.store_engine` its engine and damage errors, :mod:`.store_marker` the stores a run had;
- :mod:`.check` / :mod:`.store_health`: the health of a run directory (``hstu-blair check``);
- :mod:`.convert`: run directories of earlier layouts (``hstu-blair convert-run`` and ``check``).
"""

"""A whole continual-learning experiment from a config: the data set and registry model it names,
trained by a `ContinualLearner` (the same one a user's own model trains with)."""

from sparcl_tf import distribute
from sparcl_tf.config import validate
from sparcl_tf.data import build_tasks, load_source
from sparcl_tf.learner import ContinualLearner
from sparcl_tf.methods import build_method
from sparcl_tf.models.networks import build_networks


class Experiment:
    """One registry run: the data and networks `config` names, trained by a `ContinualLearner`
    that plans the whole task sequence ahead, living in `workdir` (None: no files; `read_only`:
    its latest checkpoint restored, nothing written, as tools.convert reads a run), on the
    devices or workers `config.distribute` names."""

    def __init__(self, config, workdir, verbose=1, read_only=False):
        self.config = validate(config)
        self.workdir = workdir
        replication = distribute.create(self.config.distribute)  # before TensorFlow's first op
        self.tasks = build_tasks(load_source(config.data), config.data, config.seed)
        with replication.scope():
            network, kind = build_networks(self.config, self.tasks)
        self.learner = ContinualLearner.from_config(
            self.config, network, build_method(config.method), self.tasks, kind,
            workdir=workdir, verbose=verbose, read_only=read_only,
            replication=replication)

    @property
    def network(self):
        return self.learner.network

    @property
    def model(self):
        return self.learner.model

    @property
    def engine(self):
        return self.learner.engine

    @property
    def session(self):
        return self.learner.session

    @property
    def plan(self):
        return self.learner.plan

    @property
    def kind(self):
        return self.learner.kind

    @property
    def buffer(self):
        return self.learner.buffer

    @property
    def progress(self):
        return self.learner.progress

    def run(self, stop_after_task=None):
        """Trains the remaining tasks, then writes results.json and plots; returns the results."""
        return self.learner.run_planned(stop_after_task)


def run_experiment(config, workdir, verbose=1):
    return Experiment(config, workdir, verbose=verbose).run()

"""A data set the library reads, split into class-incremental tasks for a user's own loop."""

from sparcl_tf.config import base_config
from sparcl_tf.data.sources import load_source
from sparcl_tf.data.tasks import build_tasks


def split_dataset(source="fashion_mnist", data_dir="", classes_per_task=2, train_per_task=0,
                  test_per_task=0, seed=0):
    """A data set the library reads (`data.source`: fashion_mnist, mnist, cifar10, ...) split
    into class-incremental tasks, for a user's own loop: a `TaskSequence` whose `tasks` hold
    x_train, y_train, x_test, y_test and classes, with the training images' per-channel `mean`
    and `std` (in [0, 1] units). 0 per task = all examples."""
    data = base_config().data
    data.source, data.dir, data.classes_per_task = source, data_dir, classes_per_task
    data.train_per_task, data.test_per_task = train_per_task, test_per_task
    return build_tasks(load_source(data), data, seed)

from sparcl_tf.replay.buffer import ReservoirBuffer

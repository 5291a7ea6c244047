"""The engines that run a session's steps under the one task loop, each implementing
`session.engine.Engine`: Keras (`keras`), LiteRT (`litert`), the TFLM head (`tflm`)."""

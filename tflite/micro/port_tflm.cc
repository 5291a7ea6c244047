// The TFLite Micro side of a board port: the frozen int8 backbone as a sparcl_extract_fn.
//
// NOT COMPILED IN THIS REPOSITORY: it needs the TFLM sources (github.com/tensorflow/tflite-micro),
// which the Python wheel used here does not ship. It follows TFLM's documented C++ API
// (tflite::GetModel, MicroMutableOpResolver, MicroInterpreter). The backbone that
// `python -m tools.micro` writes (backbone_int8.tflite) uses CONV_2D and MEAN only; turn it into
// a C array with `xxd -i backbone_int8.tflite > backbone_model.cc`.
#include <cstring>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

extern "C" {
#include "sparcl_micro.h"
}

namespace {

// tools.micro reports the measured minimum as backbone_arena_bytes (18,352 B for the Split
// Fashion-MNIST width-0.5 backbone); keep some headroom for other TFLM versions.
constexpr int kArenaBytes = 24 * 1024;
alignas(16) uint8_t tensor_arena[kArenaBytes];

tflite::MicroInterpreter* interpreter = nullptr;

}  // namespace

// Call once at boot with the model bytes (in flash). Returns 0 on success.
extern "C" int sparcl_tflm_init(const unsigned char* model_data) {
  static tflite::MicroMutableOpResolver<2> resolver;
  if (resolver.AddConv2D() != kTfLiteOk || resolver.AddMean() != kTfLiteOk) return -1;
  const tflite::Model* model = tflite::GetModel(model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) return -2;
  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena, kArenaBytes);
  interpreter = &static_interpreter;
  return interpreter->AllocateTensors() == kTfLiteOk ? 0 : -3;
}

// sparcl_extract_fn: one int8 image (quantised with the backbone's input scale / zero point) in,
// the int8 features out.
extern "C" int sparcl_tflm_extract(void* context, const int8_t* image, int8_t* features) {
  (void)context;
  TfLiteTensor* input = interpreter->input(0);
  std::memcpy(input->data.int8, image, input->bytes);
  if (interpreter->Invoke() != kTfLiteOk) return -1;
  const TfLiteTensor* output = interpreter->output(0);
  std::memcpy(features, output->data.int8, output->bytes);
  return 0;
}

// Declarations of the LiteRT Java API calls the Android adapter uses, exactly as LiteRT's AAR
// (com.google.ai.edge.litert:litert, package org.tensorflow.lite) declares them. They exist only
// so CI can type-check InterpreterModel.kt without an Android SDK; the app links the real AAR.
package org.tensorflow.lite;

import java.io.File;
import java.nio.ByteBuffer;
import java.util.Map;

public final class Interpreter implements AutoCloseable {
    public static class Options {
        public Options() { throw new UnsupportedOperationException("API declaration only"); }
        public Options setNumThreads(int numThreads) { throw new UnsupportedOperationException(); }
    }

    public Interpreter(File modelFile, Options options) { throw new UnsupportedOperationException(); }
    public Interpreter(ByteBuffer byteBuffer, Options options) { throw new UnsupportedOperationException(); }
    public String[] getSignatureKeys() { throw new UnsupportedOperationException(); }
    public String[] getSignatureInputs(String signatureKey) { throw new UnsupportedOperationException(); }
    public String[] getSignatureOutputs(String signatureKey) { throw new UnsupportedOperationException(); }
    public Tensor getInputTensorFromSignature(String inputName, String signatureKey) {
        throw new UnsupportedOperationException();
    }
    public Tensor getOutputTensorFromSignature(String outputName, String signatureKey) {
        throw new UnsupportedOperationException();
    }
    public void runSignature(Map<String, Object> inputs, Map<String, Object> outputs, String signatureKey) {
        throw new UnsupportedOperationException();
    }
    @Override public void close() { throw new UnsupportedOperationException(); }
}

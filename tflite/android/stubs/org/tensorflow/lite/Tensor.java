// See Interpreter.java: a declaration of the LiteRT Java API, for type-checking only.
package org.tensorflow.lite;

public interface Tensor {
    DataType dataType();
    int[] shape();
    int[] shapeSignature();
    String name();
    int numBytes();
}

"""Post-training quantization science: fake-quant library, RTN/GPTQ baselines, tinylm training and outlier statistics."""

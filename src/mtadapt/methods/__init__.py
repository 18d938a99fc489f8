"""Parameter-efficient fine-tuning methods, written here, and what every method shares.

    base.py               the contract a method follows (MethodConfig, AdapterLayer), routing
    registry.py           method name -> (config class, apply function)
    lora.py               LoRA
    bottleneck.py         Houlsby and Pfeiffer adapters
    prefix.py, prompt.py  prefix tuning, prompt tuning
    baselines.py          full fine-tuning and BitFit (whole-model methods)
    language_adapters.py  one adapter per language, chosen per example
    routing.py            several named adapters on one base: load, activate, switch, delete
    storage.py            save/load one adapter (safetensors + JSON, base fingerprint)
    merge.py              merge LoRA into plain weights (folders; in place with exact restore)
    peft_interop.py       HF PEFT folders both ways
    params.py             the parameter and size report
"""

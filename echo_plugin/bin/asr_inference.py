"""ESPnet's ASR decoding entry point with Echo components registered.

``espnet2.bin.asr_inference`` builds models through ASRTask's choice tables,
so Echo classes must be registered before it parses a config.

    python -m echo_plugin.bin.asr_inference --asr_train_config ... --asr_model_file ...
"""
from echo_plugin import register

register()

from espnet2.bin.asr_inference import main  # noqa: E402

if __name__ == "__main__":
    main()

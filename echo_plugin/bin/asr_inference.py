"""ESPnet's ASR decoding entry point with Echo components registered.

``espnet2.bin.asr_inference`` builds models through ASRTask's choice tables,
so Echo classes must be registered before it parses a config. Weights load
strictly: a missing or unexpected parameter is an error, not a random init.
With ``normalize: speaker_mvn`` pass the speaker statistics as data
(``--data_path_and_name_and_type <dir>/spk_stats.scp,spk_stats,npy
--allow_variable_data_keys true``): the decoding loop hands them to the model.

    python -m echo_plugin.bin.asr_inference --asr_train_config ... --asr_model_file ...
"""
from echo_plugin import register
from echo_plugin.inference import speaker_speech2text, strict_load

register()
strict_load.install()
speaker_speech2text.install()

from espnet2.bin.asr_inference import main  # noqa: E402

if __name__ == "__main__":
    main()

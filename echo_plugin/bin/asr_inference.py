"""ESPnet's ASR decoding entry point, decoding with EchoSpeech2Text.

``espnet2.bin.asr_inference`` builds models through ASRTask's choice tables, so
the Echo classes are registered before it parses a config. Its decoding loop
builds :class:`~echo_plugin.inference.speaker_speech2text.EchoSpeech2Text`
(:func:`echo_plugin.espnet_patches.use_echo_speech2text`): weights load strictly
(a missing or unexpected parameter is an error, not a random init), and with
``normalize: speaker_mvn`` the speaker statistics given as data
(``--data_path_and_name_and_type <dir>/spk_stats.scp,spk_stats,npy
--allow_variable_data_keys true``) reach the model.

    python -m echo_plugin.bin.asr_inference --asr_train_config ... --asr_model_file ...
"""
from echo_plugin import espnet_patches, register

register()
espnet_patches.use_echo_speech2text()

from espnet2.bin.asr_inference import main  # noqa: E402

if __name__ == "__main__":
    main()

"""ESPnet task classes of the plugin (:class:`echo_plugin.tasks.asr.EchoASRTask`)."""

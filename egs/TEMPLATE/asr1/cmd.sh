# Job dispatch for the stage runner. Choose the backend with cmd_backend:
#   local : jobs run on this machine (the default)
#   slurm : each stage's jobs go to Slurm as one sbatch job array; set
#           slurm_opts to your partition/time/account, e.g.
#           slurm_opts="--partition=gpu --time=24:00:00"
# Commands take Kaldi's form: ${train_cmd} JOB=1:N log.JOB.log command args
# (cuda_cmd is also the --cmd of ESPnet's launcher in stage 5: asr.sh --num_nodes N runs N copies)
cmd_backend=${cmd_backend:-local}
slurm_opts=${slurm_opts:-}

export ECHO_SLURM_OPTS=${slurm_opts}   # read by the launcher (no quoting trouble)
_launch="python -m echo_plugin.recipe.launch --backend ${cmd_backend}"
train_cmd=${_launch}     # CPU jobs (stats, data)
cuda_cmd=${_launch}      # training; add --gpu N
decode_cmd=${_launch}    # decoding

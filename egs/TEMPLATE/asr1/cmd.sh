# Job dispatch for the stage runner (echo_plugin.recipe.launch). Choose the backend with cmd_backend:
#   local : jobs run on this machine (the default)
#   slurm : a stage's jobs go to Slurm as one sbatch --wait job array (training: one job, or with asr.sh
#           --num_nodes N one job on N nodes with srun inside), each with the resources of its job class
#           below, which slurm_conf turns into sbatch options (ESPnet's conf/slurm.conf format; default: the
#           recipe's conf/slurm.conf if it has one, else egs/TEMPLATE/asr1/conf/slurm.conf);
#           slurm_opts adds sbatch options to every job, e.g. slurm_opts="--partition=gpu --account=me"
# Commands take Kaldi's form: ${train_cmd} JOB=1:N log.JOB.log command args
# (cuda_cmd is also the --cmd of ESPnet's launcher in stage 5: asr.sh --num_nodes N runs N copies)
cmd_backend=${cmd_backend:-local}
slurm_opts=${slurm_opts:-}
if [ -z "${slurm_conf:-}" ]; then
    slurm_conf=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/conf/slurm.conf
    [ ! -f conf/slurm.conf ] || slurm_conf=$(pwd)/conf/slurm.conf
    [ -f "${slurm_conf}" ] || slurm_conf=   # a copied cmd.sh without its conf: the launcher's built-in one
fi
# Job classes: each kind of job's resources (--mem is per CPU). asr.sh adds --gpu N (training: --ngpu N,
# per node; decoding: 1 with --gpu_inference true) and --name. Set one to change it, e.g.
#   decode_job_opts="--num_threads 1 --mem 8G --time 12:00:00" cmd_backend=slurm ./run.sh
cpu_job_opts=${cpu_job_opts:---num_threads 1 --mem 2G --time 4:00:00}      # data, feature statistics (train_cmd)
train_job_opts=${train_job_opts:---num_threads ${train_threads:-1} --mem 4G --time 72:00:00}  # training (cuda_cmd)
decode_job_opts=${decode_job_opts:---num_threads 1 --mem 4G --time 8:00:00}  # decoding, adaptation (decode_cmd)
# Training may be requeued (sbatch --requeue): preempted or requeued (scontrol requeue JOBID), it runs again
# from ESPnet's last checkpoint.pth (asr.sh's --resume true), its earlier log kept as train.1.log.
train_requeue=${train_requeue:-true}

export ECHO_SLURM_OPTS=${slurm_opts}   # read by the launcher (no quoting trouble)
export ECHO_SLURM_CONF=${slurm_conf}
_launch="python -m echo_plugin.recipe.launch --backend ${cmd_backend}"
train_cmd="${_launch} ${cpu_job_opts}"     # CPU jobs (stats, data)
_requeue=; [ "${train_requeue}" != true ] || _requeue=" --requeue"
cuda_cmd="${_launch}${_requeue} ${train_job_opts}"  # training; asr.sh adds --gpu N
decode_cmd="${_launch} ${decode_job_opts}" # decoding; asr.sh adds --gpu 1 with --gpu_inference true

# nbgrader configuration of the dmcmc_edu course (read by every `nbgrader ...` command run in this folder).
#
# The course root is the folder of this file, wherever the repository (or a copy of this folder) sits, so the
# commands work from a clone, from CI's temporary copy and from `python -m dmcmc_edu assignments ...` alike.
# Everything runs headless and offline: no JupyterHub, no exchange folder (release/ is handed out as files),
# the gradebook is a SQLite file next to this one.
#
#   source/<assignment>/<assignment>.ipynb        the instructor's notebooks, with the model answers
#   release/<assignment>/<assignment>.ipynb       what students get        (nbgrader generate_assignment)
#   submitted/<student>/<assignment>/...          what came back           (copied in by `assignments grade`)
#   autograded/<student>/<assignment>/...         executed and scored      (nbgrader autograde)
#   feedback/<student>/<assignment>/...           HTML feedback            (nbgrader generate_feedback)
#   gradebook.db                                  scores of every cell     (nbgrader export -> grades.csv)
#
# All generated folders and files are git-ignored.
import os

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

_here = os.path.dirname(os.path.abspath(__file__))  # noqa: F821 (__file__ is set by traitlets' loader)

c.CourseDirectory.root = _here
c.CourseDirectory.course_id = "dmcmc_edu"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_here, "gradebook.db")
# files that are never copied into release/, submitted/ or autograded/
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.nbgrader.log"]

# Students and assignments are created in the gradebook as they appear (no roster needed).
c.GenerateAssignment.create_assignment = True
c.Autograde.create_student = True

# Every notebook runs in well under a minute; a cell that hangs (an endless loop in a student's answer) is stopped
# after this many seconds: the notebook stops there (its kernel is killed, whether it heeds interrupts or not), the
# cells that did not run score nothing, and the batch goes on with the next student.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
# The kernel is the one of the Python running nbgrader (python3 of this environment), whatever the notebook says.
c.Execute.kernel_name = "python3"

# Student code never grades itself (dmcmc_edu/grading/nbgrader_plugins.py, notebooks/assignments/README.md):
# autograde runs each notebook's kernel in a bubblewrap sandbox (no course files, uid 65534, no network, limits;
# DMCMC_EDU_SANDBOX=plain runs it without, NOT safe for hostile code), then judges every test cell in this process
# from the answers the kernel recorded; nbgrader's SaveAutoGrades then scores the judged cells as usual.
c.Autograde.autograde_preprocessors = [
    "dmcmc_edu.grading.nbgrader_plugins.SandboxExecute",
    "dmcmc_edu.grading.nbgrader_plugins.JudgeChecks",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# Wall-clock limit of one notebook (all its cells) and the most output it may send back.
c.SandboxExecute.notebook_seconds = 600
c.SandboxExecute.output_bytes = 16 * 2**20

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

# Assignments are created in the gradebook when they are released.  Students are NOT created as their submissions
# appear: the roster is imported once, in this folder, from a CSV file with a column `id` (and optionally
# first_name, last_name, email; students.example.csv is an example):
#   nbgrader db student import students.csv
# so that a typo in a submission's folder name is refused (python -m dmcmc_edu assignments grade names the folder)
# instead of creating a student.  One student more: nbgrader db student add <id> --first-name=... --last-name=...
c.GenerateAssignment.create_assignment = True
c.Autograde.create_student = False

# grades.csv (nbgrader export, and `assignments grade`): nbgrader's columns plus `status` -- graded, needs manual
# grading, or not submitted (then the score is left empty instead of 0): dmcmc_edu/grading/nbgrader_kit.py.
c.ExportApp.plugin_class = "dmcmc_edu.grading.nbgrader_kit.StatusCsvExport"

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

# ---- Due dates and a late penalty: an example, off by default.  To use it, uncomment the two `c.` lines below. ----
# A due date belongs to an assignment in the gradebook; set it once per assignment, in this folder (times in UTC
# unless a zone is given), e.g. from due_dates.example.csv (columns name, duedate):
#   nbgrader db assignment import due_dates.example.csv
#   nbgrader db assignment add a1_noise_and_denoising --duedate="2027-02-15 17:00:00 UTC"     (one at a time)
# A submission's time is the `timestamp.txt` beside its notebook (SUBMISSIONS/<student>/<a>/timestamp.txt, one line
# such as 2027-02-15 18:30:00 UTC; `nbgrader zip_collect` and `nbgrader collect` write it); without that file a
# submission is never late.  nbgrader's LateSubmissionPlugin then sets the penalty of a late notebook; its one
# penalty is "zero": a late submission scores 0 (grades.csv keeps raw_score, late_submission_penalty and score).
# c.AssignLatePenalties.plugin_class = "nbgrader.plugins.LateSubmissionPlugin"
# c.LateSubmissionPlugin.penalty_method = "zero"

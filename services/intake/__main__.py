from services.common.runtime import run
from services.intake.bootstrap import bootstrap

if __name__ == "__main__":
    run("intake", bootstrap)

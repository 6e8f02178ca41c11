from setuptools import find_packages, setup

setup(
    name="mindone-lumina2",
    version="0.1.0",
    description="A MindSpore port of the diffusers Lumina-Image-2.0 stack (mindone.diffusers, mindone.transformers)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["mindone", "mindone.*"]),
    package_data={"mindone": ["assets/**/*"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=[
        "mindspore>=2.9,<2.11",  # CI runs 2.10; docs/installation.md on 2.9 and earlier
        "numpy<2",
        "transformers>=5,<6",
        "huggingface_hub>=1.0",
        "safetensors",
        "tokenizers",
        "pillow",
        "tqdm",
    ],
    extras_require={
        "test": [
            "pytest",
            "pytest-xdist",  # pyproject.toml runs the suite in two worker processes (-n 2)
            "torch==2.13.0",
            "diffusers==0.42.1",
            "peft==0.21.2",
            "accelerate",
            "sentencepiece",
            # the docs tests (tests/docs): build the site, execute the notebooks
            "mkdocs",
            "mkdocs-material",
            "mkdocstrings[python]",
            "nbclient",
            "nbformat",
            "ipykernel",
        ],
        "docs": ["mkdocs", "mkdocs-material", "mkdocstrings[python]", "nbclient", "nbformat", "ipykernel"],
    },
    entry_points={"console_scripts": ["mindone-lumina2=mindone.diffusers.pipelines.lumina2.demo:console_main"]},
)

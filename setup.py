from glob import glob

from setuptools import find_packages, setup

package_name = 'dff_lifecycle'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(include=[package_name, f'{package_name}.*']),
    package_data={package_name: ['ros/fastdds_profile.xml', 'ros/fastdds_localhost.xml']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{package_name}']),
        (f'share/{package_name}', ['package.xml']),
        (f'share/{package_name}/launch', glob('launch/*.launch.py')),
        (f'share/{package_name}/params', glob('params/*.yaml')),
        (f'share/{package_name}/params/models', glob('params/models/*.yaml')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='DFF developers',
    maintainer_email='dff@example.org',
    description='Distributed Forward-Forward training on ROS 2 lifecycle nodes.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'dff_train = dff_lifecycle.cli.train:main',
            'server_container = dff_lifecycle.nodes.server_container:main',
            'master = dff_lifecycle.master.master_node:main',
            'dff_launch = dff_lifecycle.cli.launcher:main',
            'dff_lifecycle = dff_lifecycle.cli.lifecycle:main',
            'dff_graph = dff_lifecycle.cli.graph:main',
            'dff_status = dff_lifecycle.cli.status:main',
            'dff_cluster = dff_lifecycle.cli.cluster:main',
            'dff_train_action = dff_lifecycle.cli.train_action:main',
            'dff_infer = dff_lifecycle.serving.infer_node:main',
            'dff_image_publisher = dff_lifecycle.serving.image_publisher:main',
            'dff_learn = dff_lifecycle.serving.learn_node:main',
        ],
    },
)
